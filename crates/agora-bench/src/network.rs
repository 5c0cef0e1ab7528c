//! `agora bench network`: a local N-validator network (one process, each validator with its own
//! store, key, Malachite engine, HTTP API and transaction relay on loopback) under a stream of
//! signed transfers. Prints time to finality (submission to commit on the validator that received
//! the transfer) and committed transfers per second.

use agora_chain::{Node, NodeConfig};
use agora_consensus::{AppConfig, NetworkConfig};
use agora_state::{Genesis, GenesisAccount, GenesisValidator};
use agora_types::{AGR, Address, Hash, Keypair, Message, Transaction};
use anyhow::{Context, Result, bail};
use clap::Args;
use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener},
    sync::Arc,
    time::{Duration, Instant},
};

#[derive(Debug, Args)]
pub struct NetworkBenchArgs {
    /// Validators.
    #[arg(short = 'n', long, default_value_t = 4)]
    validators: usize,
    /// Transfers offered per second.
    #[arg(long, default_value_t = 6_000)]
    rate: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Sending accounts.
    #[arg(long, default_value_t = 4_000)]
    accounts: usize,
    /// Least milliseconds per height.
    #[arg(long, default_value_t = 250)]
    block_time_ms: u64,
}

const CHAIN: &str = "agora-bench-net";

fn free_addr() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

#[allow(clippy::print_stdout)]
pub fn run(args: NetworkBenchArgs) -> Result<()> {
    if args.validators == 0 || args.accounts == 0 || args.rate == 0 {
        bail!("-n, --accounts and --rate must be positive");
    }
    let dir = tempfile::tempdir()?;
    let validators: Vec<Keypair> = (0..args.validators)
        .map(|i| Keypair::from_seed_label(&format!("bench-net-validator-{i}")))
        .collect();
    let senders: Vec<Keypair> = (0..args.accounts)
        .map(|i| Keypair::from_seed_label(&format!("bench-net-sender-{i}")))
        .collect();
    let genesis = Genesis::new(CHAIN)
        .with_time(1)
        .with_accounts(
            validators
                .iter()
                .map(|k| GenesisAccount {
                    address: k.address(),
                    balance: 1_000 * AGR,
                    bonded: 100 * AGR,
                })
                .chain(senders.iter().map(|k| GenesisAccount {
                    address: k.address(),
                    balance: 1_000 * AGR,
                    bonded: 0,
                })),
        )
        .with_validators(validators.iter().map(|k| GenesisValidator {
            public_key: k.public(),
        }));
    // Signed before the clock starts: signing is the clients' work, not the network's.
    let total = args.rate * args.seconds as usize;
    println!(
        "agora bench network: {} validators on loopback, {} transfers offered at {}/s from {} accounts",
        args.validators, total, args.rate, args.accounts
    );
    let txs: Vec<(Hash, Vec<u8>)> = (0..total)
        .map(|i| {
            let key = &senders[i % args.accounts];
            let tx = Transaction {
                chain_id: CHAIN.into(),
                sender: key.public(),
                nonce: (i / args.accounts) as u64,
                fee: 1_000,
                messages: vec![Message::Transfer {
                    to: Address([0x55; 20]),
                    amount: 1,
                }],
            }
            .sign(key);
            let bytes = tx.encode();
            (Hash::digest(&bytes), bytes)
        })
        .collect();

    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let p2p: Vec<SocketAddr> = (0..args.validators)
            .map(|_| free_addr())
            .collect::<Result<_>>()?;
        let mut nodes = Vec::new();
        let mut handles = Vec::new();
        let mut api_urls = Vec::new();
        let (stop_api, stopped) = tokio::sync::watch::channel(false);
        for (i, key) in validators.into_iter().enumerate() {
            let home = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&home)?;
            let node = Arc::new(Node::open(
                &home.join("chain.redb"),
                &genesis,
                key.clone(),
                NodeConfig::default(),
            )?);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            api_urls.push(format!("http://{}", listener.local_addr()?));
            let mut stopped = stopped.clone();
            tokio::spawn(agora_api::serve(node.clone(), listener, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }));
            let config = NetworkConfig::new(
                format!("bench-node{i}"),
                p2p[i],
                p2p.iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, a)| *a)
                    .collect(),
                home.join("wal"),
                AppConfig {
                    target_time: Some(Duration::from_millis(args.block_time_ms)),
                    ..AppConfig::default()
                },
            );
            handles.push(
                agora_consensus::start(node.clone(), Arc::new(key), config)
                    .await
                    .map_err(|e| anyhow::anyhow!("starting consensus: {e:#}"))?,
            );
            nodes.push(node);
        }
        let relays: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let peers = api_urls
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, u)| u.clone())
                    .collect();
                agora_api::spawn_relay(node, peers)
            })
            .collect();
        // Warm up: the network makes a few blocks before the load starts.
        let warm = Instant::now();
        while nodes.iter().any(|n| height(n) < 3) {
            if warm.elapsed() > Duration::from_secs(60) {
                bail!("the network made no blocks in 60 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Commit times, seen by each node's block stream, keyed by transfer.
        let mut submitted: BTreeMap<Hash, (usize, Instant)> = BTreeMap::new();
        let mut streams: Vec<_> = nodes.iter().map(|n| n.subscribe()).collect();
        let mut committed: BTreeMap<Hash, Instant> = BTreeMap::new();
        let start = Instant::now();
        let tick = Duration::from_millis(20);
        let per_tick = (args.rate as u128 * tick.as_millis() / 1_000) as usize;
        let mut next = 0usize;
        let mut ticker = tokio::time::interval(tick);
        let mut last_commit = start;
        let deadline = start + Duration::from_secs(args.seconds + 30);
        while committed.len() < total && Instant::now() < deadline {
            tokio::select! {
                _ = ticker.tick(), if next < total => {
                    // Each batch goes to one validator, in turn; its relay forwards it.
                    let target = (next / per_tick.max(1)) % nodes.len();
                    let end = (next + per_tick.max(1)).min(total);
                    let batch: Vec<Vec<u8>> = txs[next..end].iter().map(|(_, b)| b.clone()).collect();
                    let now = Instant::now();
                    for (h, _) in &txs[next..end] {
                        submitted.insert(*h, (target, now));
                    }
                    let node = nodes[target].clone();
                    let results = tokio::task::spawn_blocking(move || node.submit_batch(batch)).await?;
                    let refused = results.iter().filter(|r| r.is_err()).count();
                    if refused > 0 {
                        bail!("{refused} transfers refused at admission");
                    }
                    next = end;
                }
                Ok(block) = streams[0].recv() => {
                    let now = Instant::now();
                    for tx in &block.block.txs {
                        committed.entry(tx.hash()).or_insert(now);
                    }
                    last_commit = now;
                }
            }
        }
        let elapsed = last_commit.duration_since(start);
        // Finality: from submission to commit on node 0 (every node commits the same block; the
        // receiving node's commit differs from node 0's by the commit step only).
        let mut latencies: Vec<f64> = committed
            .iter()
            .filter_map(|(h, at)| {
                submitted
                    .get(h)
                    .map(|(_, sent)| at.duration_since(*sent).as_secs_f64() * 1e3)
            })
            .collect();
        latencies.sort_by(f64::total_cmp);
        if latencies.is_empty() {
            bail!("nothing was committed");
        }
        let mean = latencies.iter().sum::<f64>() / latencies.len() as f64;
        let p50 = latencies[latencies.len() / 2];
        let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
        let heights: Vec<u64> = nodes.iter().map(|n| height(n)).collect();
        println!(
            "  committed              {:>8} of {} transfers in {:.2} s",
            committed.len(),
            total,
            elapsed.as_secs_f64()
        );
        println!(
            "  throughput             {:>8.0} transfers/s",
            committed.len() as f64 / elapsed.as_secs_f64()
        );
        println!("  time to finality       mean {mean:.0} ms, p50 {p50:.0} ms, p99 {p99:.0} ms");
        println!("  heights                {heights:?}");
        // Every node holds the same chain.
        let top = *heights.iter().min().context("no nodes")?;
        let reference: Vec<Hash> = blocks(&nodes[0], top)?;
        for (i, n) in nodes.iter().enumerate().skip(1) {
            if blocks(n, top)? != reference {
                bail!("node {i} differs from node 0 below height {top}");
            }
        }
        println!("  all {} validators hold the same {top} blocks", nodes.len());
        for r in relays {
            r.stop();
        }
        for h in handles {
            h.stop().await;
        }
        let _ = stop_api.send(true);
        Ok(())
    })
}

fn height(node: &Node) -> u64 {
    node.snapshot()
        .ok()
        .and_then(|s| s.height().ok().flatten())
        .unwrap_or(0)
}

fn blocks(node: &Node, top: u64) -> Result<Vec<Hash>> {
    let snap = node.snapshot()?;
    (0..=top)
        .map(|h| {
            snap.block(h)?
                .map(|b| b.hash())
                .with_context(|| format!("block {h} missing"))
        })
        .collect()
}
