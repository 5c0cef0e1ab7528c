//! A 4-validator network on loopback, in one process: each validator has its own store, key and
//! Malachite engine. Bounded in time; nothing leaves 127.0.0.1.

#![allow(clippy::unwrap_used)]

use agora_chain::{Node, NodeConfig};
use agora_consensus::{
    AppConfig, ConsensusHandle, NetworkConfig,
    byzantine::{ByzantineConfig, Trigger},
    start,
};
use agora_state::{Genesis, GenesisAccount, GenesisValidator};
use agora_types::{AGR, Address, Hash, Keypair, Message, SignedTransaction, Transaction};
use std::{
    net::{SocketAddr, TcpListener},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

const CHAIN: &str = "agora-net-test";

/// Each test has its own keys (so its own network identities): tests run side by side.
fn validator_key(tag: &str, i: usize) -> Keypair {
    Keypair::from_seed_label(&format!("{tag}-validator-{i}"))
}

const USERS: usize = 8;

fn user_key(i: usize) -> Keypair {
    Keypair::from_seed_label(&format!("user-{i}"))
}

fn transfer(user: usize, nonce: u64) -> SignedTransaction {
    Transaction {
        chain_id: CHAIN.into(),
        sender: user_key(user).public(),
        nonce,
        fee: 1_000,
        messages: vec![Message::Transfer {
            to: Address([0x42; 20]),
            amount: 1_000 + nonce as u128,
        }],
    }
    .sign(&user_key(user))
}

fn genesis(tag: &str, n: usize) -> Genesis {
    Genesis::new(CHAIN)
        .with_time(1)
        .with_accounts(
            (0..n)
                .map(|i| GenesisAccount {
                    address: validator_key(tag, i).address(),
                    balance: 1_000 * AGR,
                    bonded: 10 * AGR,
                })
                .chain((0..USERS).map(|i| GenesisAccount {
                    address: user_key(i).address(),
                    balance: 100 * AGR,
                    bonded: 0,
                })),
        )
        .with_validators((0..n).map(|i| GenesisValidator {
            public_key: validator_key(tag, i).public(),
        }))
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// `n` free ports below the kernel's range of ephemeral ports: while a validator is stopped, no
/// outgoing connection (whose TIME_WAIT would last a minute) can take its port, so it gets it back.
fn free_ports(n: usize) -> Vec<SocketAddr> {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768)
        .max(12_000);
    let span = ephemeral_start - 10_000;
    let seed = (std::process::id() as u16).wrapping_mul(131);
    let mut listeners = Vec::new();
    for _ in 0..10_000 {
        let step = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = 10_000 + seed.wrapping_add(step) % span;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            listeners.push(l);
            if listeners.len() == n {
                return listeners.iter().map(|l| l.local_addr().unwrap()).collect();
            }
        }
    }
    panic!("no {n} free ports below {ephemeral_start}");
}

struct Validator {
    node: Arc<Node>,
    handle: Option<ConsensusHandle>,
}

/// Serves each node's API on its own port and relays each node's client transactions to the
/// others. Returns the relays and a sender that stops the APIs.
async fn serve_and_relay(
    nodes: &[Arc<Node>],
) -> (Vec<agora_api::Relay>, tokio::sync::watch::Sender<bool>) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut urls = Vec::new();
    for node in nodes {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        urls.push(format!("http://{}", listener.local_addr().unwrap()));
        let mut stopped = stopped.clone();
        tokio::spawn(agora_api::serve(node.clone(), listener, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
    }
    let relays = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let peers = urls
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, u)| u.clone())
                .collect();
            agora_api::spawn_relay(node, peers)
        })
        .collect();
    (relays, stop)
}

async fn start_validator(
    tag: &str,
    dir: &Path,
    i: usize,
    addrs: &[SocketAddr],
    genesis: &Genesis,
) -> Validator {
    start_validator_with(tag, dir, i, addrs, genesis, AppConfig::default(), None).await
}

async fn start_validator_with(
    tag: &str,
    dir: &Path,
    i: usize,
    addrs: &[SocketAddr],
    genesis: &Genesis,
    app: AppConfig,
    byzantine: Option<ByzantineConfig>,
) -> Validator {
    let key = validator_key(tag, i);
    let home = dir.join(format!("node{i}"));
    std::fs::create_dir_all(&home).unwrap();
    // A restarted validator waits for its stopped engine to let go of the database.
    let opened = Instant::now();
    let node = loop {
        match Node::open(
            &home.join("chain.redb"),
            genesis,
            key.clone(),
            NodeConfig::default(),
        ) {
            Ok(node) => break Arc::new(node),
            Err(e) if opened.elapsed() < Duration::from_secs(10) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("node {i} does not open: {e}"),
        }
    };
    let mut config = NetworkConfig::new(
        // Unique in the process: engines register their actors by name, and tests run side by side.
        format!("{tag}-node{i}"),
        addrs[i],
        addrs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, a)| *a)
            .collect(),
        home.join("wal"),
        app,
    );
    if let Some(byz) = byzantine {
        config = config.byzantine(byz);
    }
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
    const TAG: &str = "agree";
    init_logs();
    let (_dir, _, _, mut vals) = start_network(TAG).await;
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
        (0..4).map(|i| validator_key(TAG, i).address()).collect();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfers_sent_to_any_node_commit_once_in_the_same_order_everywhere() {
    const TAG: &str = "transfers";
    init_logs();
    let (_dir, _, _, mut vals) = start_network(TAG).await;
    let arcs: Vec<Arc<Node>> = vals.iter().map(|v| v.node.clone()).collect();
    let (relays, stop_apis) = serve_and_relay(&arcs).await;
    // Each user sends its transfers, in nonce order and a few at a time, to one node.
    const PER_USER: u64 = 25;
    let mut hashes = Vec::new();
    for round in 0..5 {
        for user in 0..USERS {
            let batch: Vec<Vec<u8>> = (0..PER_USER / 5)
                .map(|k| transfer(user, round * (PER_USER / 5) + k).encode())
                .collect();
            for r in arcs[user % 4].submit_batch(batch) {
                hashes.push(r.expect("admitted"));
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(hashes.len(), USERS * PER_USER as usize);
    let start = Instant::now();
    loop {
        let done = arcs.iter().all(|n| {
            let snap = n.snapshot().unwrap();
            hashes
                .iter()
                .all(|h| snap.tx_location(h).unwrap().is_some())
        });
        if done {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not every transfer committed on every node in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The same place everywhere, and no transaction twice.
    let snaps: Vec<_> = arcs.iter().map(|n| n.snapshot().unwrap()).collect();
    for h in &hashes {
        let loc = snaps[0].tx_location(h).unwrap();
        for s in &snaps[1..] {
            assert_eq!(s.tx_location(h).unwrap(), loc);
        }
    }
    let top = snaps
        .iter()
        .map(|s| s.height().unwrap().unwrap())
        .min()
        .unwrap();
    let committed: usize = (1..=top)
        .map(|h| snaps[0].block(h).unwrap().unwrap().txs.len())
        .sum();
    assert_eq!(committed, hashes.len(), "every transfer exactly once");
    let reference = chain(&arcs[0], top);
    for n in &arcs[1..] {
        assert_eq!(chain(n, top), reference);
    }
    // The recipient got every transfer once.
    let got = agora_state::read_account(&snaps[0], &Address([0x42; 20]))
        .unwrap()
        .unwrap()
        .balance;
    let expected: u128 = (0..USERS as u64)
        .flat_map(|_| 0..PER_USER)
        .map(|n| 1_000 + n as u128)
        .sum();
    assert_eq!(got, expected);
    drop(snaps);
    for r in relays {
        r.stop();
    }
    let _ = stop_apis.send(true);
    for v in &mut vals {
        v.handle.take().unwrap().stop().await;
    }
}

/// Four validators of a new chain, started: the home directory, genesis, p2p addresses, nodes.
async fn start_network(tag: &str) -> (tempfile::TempDir, Genesis, Vec<SocketAddr>, Vec<Validator>) {
    let dir = tempfile::tempdir().unwrap();
    let g = genesis(tag, 4);
    let addrs = free_ports(4);
    let mut vals = Vec::new();
    for i in 0..4 {
        vals.push(start_validator(tag, dir.path(), i, &addrs, &g).await);
    }
    (dir, g, addrs, vals)
}

async fn stop(v: &mut Validator) {
    if let Some(h) = v.handle.take() {
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_validator_down_the_rest_go_on_and_it_catches_up_when_back() {
    const TAG: &str = "one-down";
    init_logs();
    let (dir, g, addrs, mut vals) = start_network(TAG).await;
    wait_for(&[&*vals[0].node], 3, Duration::from_secs(60)).await;
    // Validator 3 goes down; the three others (3/4 of the power) go on.
    stop(&mut vals[3]).await;
    let down = vals.pop().unwrap();
    let stopped_at = height(&down.node);
    drop(down);
    let others: Vec<&Node> = vals.iter().map(|v| &*v.node).collect();
    wait_for(&others, stopped_at + 10, Duration::from_secs(60)).await;
    // Back from its own store and WAL: it catches up by sync and agrees on every block.
    let back = start_validator(TAG, dir.path(), 3, &addrs, &g).await;
    let target = height(&vals[0].node) + 3;
    let all: Vec<&Node> = vals.iter().map(|v| &*v.node).chain([&*back.node]).collect();
    wait_for(&all, target, Duration::from_secs(60)).await;
    let reference = chain(&vals[0].node, target);
    assert_eq!(chain(&back.node, target), reference);
    for v in &vals[1..] {
        assert_eq!(chain(&v.node, target), reference);
    }
    vals.push(back);
    for v in &mut vals {
        stop(v).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_of_four_down_the_chain_halts_without_forking_and_resumes() {
    const TAG: &str = "two-down";
    init_logs();
    let (dir, g, addrs, mut vals) = start_network(TAG).await;
    wait_for(&[&*vals[0].node], 3, Duration::from_secs(60)).await;
    stop(&mut vals[2]).await;
    stop(&mut vals[3]).await;
    vals.truncate(2);
    // Half the power cannot decide: after what was in flight, no new block for 3 s.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let halted: Vec<u64> = vals.iter().map(|v| height(&v.node)).collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later: Vec<u64> = vals.iter().map(|v| height(&v.node)).collect();
    assert_eq!(later, halted, "blocks were made without a quorum");
    let top = *halted.iter().min().unwrap();
    assert_eq!(chain(&vals[0].node, top), chain(&vals[1].node, top));
    // One comes back: 3/4 of the power again, the chain resumes.
    vals.push(start_validator(TAG, dir.path(), 2, &addrs, &g).await);
    let target = halted.iter().max().unwrap() + 5;
    let all: Vec<&Node> = vals.iter().map(|v| &*v.node).collect();
    wait_for(&all, target, Duration::from_secs(90)).await;
    let reference = chain(&vals[0].node, target);
    for v in &vals[1..] {
        assert_eq!(chain(&v.node, target), reference);
    }
    for v in &mut vals {
        stop(v).await;
    }
}

/// Faulty proposal: the header claims another state root.
fn wrong_state_root(block: &mut agora_types::Block) {
    block.header.state_root = Hash::digest(b"not the state");
}

/// Faulty proposal: a transfer with a forged signature (the header's tx root made to match).
fn forged_transaction(block: &mut agora_types::Block) {
    let mut tx = transfer(0, 1_000);
    tx.signature = agora_types::Signature([7; 64]);
    block.txs.push(tx);
    let hashes: Vec<Hash> = block.txs.iter().map(SignedTransaction::hash).collect();
    block.header.tx_root = agora_types::merkle_root(&hashes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proposals_with_a_wrong_state_root_or_a_forged_transaction_are_rejected() {
    const TAG: &str = "faulty";
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let g = genesis(TAG, 4);
    let addrs = free_ports(4);
    let mut vals = Vec::new();
    for i in 0..4 {
        let tamper: Option<fn(&mut agora_types::Block)> = match i {
            0 => Some(wrong_state_root),
            1 => Some(forged_transaction),
            _ => None,
        };
        let app = AppConfig {
            tamper,
            ..AppConfig::default()
        };
        vals.push(start_validator_with(TAG, dir.path(), i, &addrs, &g, app, None).await);
    }
    let nodes: Vec<&Node> = vals.iter().map(|v| &*v.node).collect();
    wait_for(&nodes, 8, Duration::from_secs(90)).await;
    let reference = chain(nodes[0], 8);
    for n in &nodes[1..] {
        assert_eq!(chain(n, 8), reference);
    }
    // Only the honest validators' blocks made it, each checked by everyone.
    let snap = nodes[0].snapshot().unwrap();
    let honest = [
        validator_key(TAG, 2).address(),
        validator_key(TAG, 3).address(),
    ];
    for h in 1..=8 {
        let b = snap.block(h).unwrap().unwrap();
        assert!(
            honest.contains(&b.header.proposer),
            "block {h} by a faulty proposer"
        );
        assert!(b.txs.is_empty());
    }
    drop(snap);
    for v in &mut vals {
        stop(v).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_validator_sending_conflicting_votes_does_not_make_honest_nodes_diverge() {
    const TAG: &str = "equivocate";
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let g = genesis(TAG, 4);
    let addrs = free_ports(4);
    let mut vals = Vec::new();
    for i in 0..4 {
        // Validator 0 signs two votes for every vote it casts (the value and nil), and sends
        // two conflicting proposals when it proposes.
        let byz = (i == 0).then(|| {
            ByzantineConfig::new(Some(7))
                .with_equivocate_votes(Trigger::Always)
                .with_equivocate_proposals(Trigger::Always)
        });
        vals.push(
            start_validator_with(TAG, dir.path(), i, &addrs, &g, AppConfig::default(), byz).await,
        );
    }
    let nodes: Vec<&Node> = vals.iter().map(|v| &*v.node).collect();
    wait_for(&nodes, 10, Duration::from_secs(90)).await;
    let reference = chain(nodes[1], 10);
    for n in [nodes[0], nodes[2], nodes[3]] {
        assert_eq!(chain(n, 10), reference);
    }
    for v in &mut vals {
        stop(v).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bond_adds_a_validator_at_the_epoch_end_on_every_node() {
    const TAG: &str = "bonding";
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut g = genesis(TAG, 4);
    g.consensus.epoch_length = 6;
    // A fifth account, funded but not bonded: it runs a node from the start and votes once its
    // bond takes effect.
    let newcomer = validator_key(TAG, 4);
    g.accounts.push(GenesisAccount {
        address: newcomer.address(),
        balance: 1_000 * AGR,
        bonded: 0,
    });
    let addrs = free_ports(5);
    let mut vals = Vec::new();
    for i in 0..5 {
        vals.push(start_validator(TAG, dir.path(), i, &addrs, &g).await);
    }
    wait_for(&[&*vals[0].node], 2, Duration::from_secs(60)).await;
    let bond = Transaction {
        chain_id: CHAIN.into(),
        sender: newcomer.public(),
        nonce: 0,
        fee: 1_000,
        messages: vec![Message::Bond { amount: 30 * AGR }],
    }
    .sign(&newcomer);
    // Sent to a node of the set (the newcomer's own mempool is not relayed here).
    vals[1].node.submit(&bond.encode()).expect("bond admitted");
    // After the next epoch end every node holds a set of five, the newcomer with 30 of 70.
    let start = Instant::now();
    loop {
        let sets: Vec<Option<agora_state::ValidatorSet>> = vals
            .iter()
            .map(|v| agora_state::read_validator_set(&v.node.snapshot().unwrap()).unwrap())
            .collect();
        if sets
            .iter()
            .all(|s| s.as_ref().is_some_and(|s| s.validators.len() == 5))
        {
            assert!(sets.windows(2).all(|w| w[0] == w[1]), "sets differ");
            let set = sets[0].as_ref().unwrap();
            assert_eq!(set.total_power(), 70);
            assert_eq!(set.get(&newcomer.address()).unwrap().power, 30);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the set never grew"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let grown = height(&vals[0].node);
    assert!(
        grown >= 6,
        "the set changes at an epoch end, not before (height {grown})"
    );
    // Its power counts: with validators 2 and 3 down (20 of 70), the other 50 (> 2/3) go on —
    // the four genesis validators alone, two of them down, could not.
    stop(&mut vals[2]).await;
    stop(&mut vals[3]).await;
    let live: Vec<&Node> = [0usize, 1, 4].iter().map(|i| &*vals[*i].node).collect();
    let at = height(&vals[0].node);
    wait_for(&live, at + 5, Duration::from_secs(60)).await;
    let reference = chain(live[0], at + 5);
    for n in &live[1..] {
        assert_eq!(chain(n, at + 5), reference);
    }
    // The newcomer proposes too, now.
    let snap = live[0].snapshot().unwrap();
    let proposers: std::collections::BTreeSet<Address> = (grown + 1..=at + 5)
        .map(|h| snap.block(h).unwrap().unwrap().header.proposer)
        .collect();
    assert!(proposers.contains(&newcomer.address()), "{proposers:?}");
    drop(snap);
    for v in &mut vals {
        stop(v).await;
    }
}
