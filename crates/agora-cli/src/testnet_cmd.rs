//! `agora testnet init`: the homes of a local multi-validator network (keys, one genesis, and each
//! node's network file), and the network file `agora node` reads in network mode.

use crate::node_cmd::{genesis_path, load_or_create_key, node_key_path};
use agora_daemons::home::{NetworkFile, default_block_time_ms, network_path};
use agora_state::{ConsensusParams, Genesis, GenesisAccount, GenesisValidator};
use agora_types::{AGR, Keypair};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

#[derive(Debug, Subcommand)]
pub enum TestnetCommand {
    /// Write DIR/node0 … DIR/node{N-1}: a validator key each, one genesis naming them all, and each
    /// node's network file (loopback ports). Start each with `agora node --home DIR/nodeI`.
    Init {
        /// Number of validators.
        #[arg(short = 'n', long, default_value_t = 4)]
        validators: usize,
        /// Where the node homes go.
        #[arg(long)]
        out: PathBuf,
        /// Chain id.
        #[arg(long, default_value = "agora-testnet")]
        chain_id: String,
        /// First port: node I listens for peers on BASE+2I and serves its API on BASE+2I+1.
        #[arg(long, default_value_t = 27_000)]
        base_port: u16,
        /// Blocks per epoch (the validator set follows bonds at epoch ends).
        #[arg(long, default_value_t = 100)]
        epoch_length: u64,
        /// Another funded account: `ADDRESS=AMOUNT` or `WALLET=AMOUNT` (a wallet under --home).
        /// Repeatable.
        #[arg(long = "account", value_name = "WHO=AMOUNT")]
        accounts: Vec<String>,
        /// Replace existing homes.
        #[arg(long)]
        force: bool,
    },
}

pub fn testnet(home: &Path, cmd: TestnetCommand) -> Result<()> {
    match cmd {
        TestnetCommand::Init {
            validators,
            out,
            chain_id,
            base_port,
            epoch_length,
            accounts,
            force,
        } => {
            let extra = crate::node_cmd::parse_accounts(home, &accounts)?;
            init(
                &out,
                validators,
                &chain_id,
                base_port,
                epoch_length,
                extra,
                force,
            )
        }
    }
}

fn init(
    out: &Path,
    n: usize,
    chain_id: &str,
    base_port: u16,
    epoch_length: u64,
    extra: Vec<GenesisAccount>,
    force: bool,
) -> Result<()> {
    if !(1..=100).contains(&n) {
        bail!("-n must be 1 to 100 validators");
    }
    if usize::from(base_port) + 2 * n > usize::from(u16::MAX) {
        bail!("--base-port {base_port} leaves no room for {n} nodes");
    }
    let homes: Vec<PathBuf> = (0..n).map(|i| out.join(format!("node{i}"))).collect();
    for home in &homes {
        if home.join("config").exists() {
            if !force {
                bail!(
                    "{} exists (pass --force to replace the testnet)",
                    home.display()
                );
            }
            std::fs::remove_dir_all(home)
                .with_context(|| format!("removing {}", home.display()))?;
        }
    }
    let keys: Vec<Keypair> = homes
        .iter()
        .map(|h| load_or_create_key(&node_key_path(h)))
        .collect::<Result<_>>()?;
    let genesis = Genesis::new(chain_id)
        .with_time(agora_chain::now_ms())
        .with_consensus(ConsensusParams {
            epoch_length,
            ..ConsensusParams::default()
        })
        .with_accounts(
            keys.iter()
                .map(|k| GenesisAccount {
                    address: k.address(),
                    balance: 1_000_000 * AGR,
                    bonded: 1_000 * AGR,
                })
                .chain(extra),
        )
        .with_models(crate::node_cmd::pinned_models())
        .with_validators(keys.iter().map(|k| GenesisValidator {
            public_key: k.public(),
        }));
    genesis.initial_writes().context("the genesis")?;
    let p2p = |i: usize| SocketAddr::from(([127, 0, 0, 1], base_port + 2 * i as u16));
    let api = |i: usize| SocketAddr::from(([127, 0, 0, 1], base_port + 2 * i as u16 + 1));
    for (i, home) in homes.iter().enumerate() {
        let path = genesis_path(home);
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        crate::keystore::write_shared(&path, genesis.to_json().as_bytes())?;
        let others = (0..n).filter(|j| *j != i);
        let file = NetworkFile {
            moniker: format!("node{i}"),
            p2p_addr: p2p(i),
            api_addr: api(i),
            peers: others.clone().map(p2p).collect(),
            peer_apis: others.map(|j| format!("http://{}", api(j))).collect(),
            block_time_ms: default_block_time_ms(),
        };
        crate::keystore::write_shared(
            &network_path(home),
            serde_json::to_string_pretty(&file)?.as_bytes(),
        )?;
    }
    println!("Testnet {chain_id}: {n} validators under {}", out.display());
    for (i, (home, key)) in homes.iter().zip(&keys).enumerate() {
        println!(
            "  node{i}: {}  p2p {}  API http://{}",
            key.address(),
            p2p(i),
            api(i)
        );
        let _ = home;
    }
    println!(
        "Start each: agora node --home {}",
        out.join("node0").display()
    );
    Ok(())
}
