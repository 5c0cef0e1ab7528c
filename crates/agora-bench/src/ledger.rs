//! `agora bench ledger`: signed transfers admitted, executed and committed per second.

use agora_chain::{MempoolConfig, Node, NodeConfig};
use agora_state::{Genesis, GenesisAccount, Params};
use agora_types::{AGR, Address, Keypair, Message, Transaction};
use anyhow::{Result, bail};
use rayon::prelude::*;
use std::time::{Duration, Instant};

/// What the block-building side of the benchmark did.
#[derive(Default)]
pub(crate) struct Tally {
    produce: Duration,
    committed: usize,
    blocks: u64,
}

impl Tally {
    pub(crate) fn build_block(&mut self, node: &Node) -> Result<()> {
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

pub(crate) fn rate(n: usize, d: Duration) -> String {
    format!("{:>10.0}", n as f64 / d.as_secs_f64().max(1e-9))
}

pub(crate) fn ledger(
    n_txs: usize,
    n_accounts: usize,
    block_txs: usize,
    sequential: bool,
    account_index: bool,
) -> Result<()> {
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
            ..MempoolConfig::default()
        },
        account_index,
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
        NodeConfig {
            account_index,
            ..NodeConfig::default()
        },
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
        "agora bench ledger: {n_txs} signed transfers, {n_accounts} accounts, {blocks} blocks of up to {block_txs}, {} threads, accounts' histories {}",
        rayon::current_num_threads(),
        if account_index {
            "indexed"
        } else {
            "not indexed"
        }
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
