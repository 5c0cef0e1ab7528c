//! A 4-validator network on loopback, in one process: each validator has its own store, key and
//! Malachite engine. Bounded in time; nothing leaves 127.0.0.1.

#![allow(clippy::unwrap_used)]

use agora_chain::{Node, NodeConfig};
use agora_consensus::{AppConfig, ConsensusHandle, NetworkConfig, start};
use agora_state::{Genesis, GenesisAccount, GenesisValidator, Params};
use agora_types::{AGR, Address, Hash, Keypair};
use std::{
    net::{SocketAddr, TcpListener},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

const CHAIN: &str = "agora-net-test";

fn validator_key(i: usize) -> Keypair {
    Keypair::from_seed_label(&format!("validator-{i}"))
}

fn genesis(n: usize) -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 1,
        params: Params::default(),
        accounts: (0..n)
            .map(|i| GenesisAccount {
                address: validator_key(i).address(),
                balance: 1_000 * AGR,
                bonded: 10 * AGR,
            })
            .collect(),
        market: Default::default(),
        verify: Default::default(),
        consensus: Default::default(),
        validators: (0..n)
            .map(|i| GenesisValidator {
                public_key: validator_key(i).public(),
            })
            .collect(),
        models: Vec::new(),
    }
}

fn free_ports(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

struct Validator {
    node: Arc<Node>,
    handle: Option<ConsensusHandle>,
}

async fn start_validator(
    dir: &Path,
    i: usize,
    addrs: &[SocketAddr],
    genesis: &Genesis,
) -> Validator {
    let key = validator_key(i);
    let home = dir.join(format!("node{i}"));
    std::fs::create_dir_all(&home).unwrap();
    let node = Arc::new(
        Node::open(
            &home.join("chain.redb"),
            genesis,
            key.address(),
            NodeConfig::default(),
        )
        .unwrap(),
    );
    let config = NetworkConfig {
        moniker: format!("node{i}"),
        listen: addrs[i],
        peers: addrs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, a)| *a)
            .collect(),
        wal_dir: home.join("wal"),
        app: AppConfig::default(),
    };
    let handle = start(node.clone(), Arc::new(key), config).await.unwrap();
    Validator {
        node,
        handle: Some(handle),
    }
}

fn height(node: &Node) -> u64 {
    node.snapshot().unwrap().height().unwrap().unwrap()
}

/// (block hash, state root) at every height up to `to`.
fn chain(node: &Node, to: u64) -> Vec<(Hash, Hash)> {
    let snap = node.snapshot().unwrap();
    (0..=to)
        .map(|h| {
            let b = snap.block(h).unwrap().expect("block");
            (b.hash(), b.header.state_root)
        })
        .collect()
}

async fn wait_for(nodes: &[&Node], target: u64, limit: Duration) {
    let start = Instant::now();
    loop {
        if nodes.iter().all(|n| height(n) >= target) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "heights {:?} after {limit:?}, waiting for {target}",
            nodes.iter().map(|n| height(n)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_validators_agree_on_every_block_and_state_root() {
    let dir = tempfile::tempdir().unwrap();
    let g = genesis(4);
    let addrs = free_ports(4);
    let mut vals = Vec::new();
    for i in 0..4 {
        vals.push(start_validator(dir.path(), i, &addrs, &g).await);
    }
    let nodes: Vec<&Node> = vals.iter().map(|v| &*v.node).collect();
    wait_for(&nodes, 20, Duration::from_secs(90)).await;
    let reference = chain(nodes[0], 20);
    for (i, n) in nodes.iter().enumerate().skip(1) {
        assert_eq!(chain(n, 20), reference, "node {i} differs from node 0");
    }
    // Every validator proposed some of them, and every block names a validator as proposer.
    let snap = nodes[0].snapshot().unwrap();
    let proposers: std::collections::BTreeSet<Address> = (1..=20)
        .map(|h| snap.block(h).unwrap().unwrap().header.proposer)
        .collect();
    let keys: std::collections::BTreeSet<Address> =
        (0..4).map(|i| validator_key(i).address()).collect();
    assert!(proposers.is_subset(&keys), "{proposers:?}");
    assert!(proposers.len() >= 3, "proposers {proposers:?}");
    // Every committed block carries its certificate.
    for h in 1..=20 {
        assert!(snap.certificate(h).unwrap().is_some(), "certificate of {h}");
    }
    drop(snap);
    for v in &mut vals {
        v.handle.take().unwrap().stop().await;
    }
}
