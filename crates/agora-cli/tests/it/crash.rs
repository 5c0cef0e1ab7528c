use crate::*;
use agora_types::{AGR, Address, Keypair, Message, Transaction};
use serde_json::json;
use std::collections::BTreeMap;

const SENDERS: usize = 4;

fn sender(i: usize) -> Keypair {
    Keypair::from_seed_label(&format!("crash-sender-{i}"))
}

fn recipients() -> [Address; 2] {
    [Address([0x11; 20]), Address([0x22; 20])]
}

fn balance_total(api: &str, address: &Address) -> u128 {
    let Some(acc) = get(api, &format!("/v1/accounts/{address}")) else {
        return 0;
    };
    ["balance", "bonded", "unbonding"]
        .iter()
        .map(|f| acc[*f].as_str().unwrap().parse::<u128>().unwrap())
        .sum()
}

fn nonce(api: &str, address: &Address) -> u64 {
    get(api, &format!("/v1/accounts/{address}")).unwrap()["nonce"]
        .as_u64()
        .unwrap()
}

/// Streams transfers for `duration`, returning the hashes the API reported committed.
fn stream_transfers(api: &str, chain_id: &str, duration: Duration) -> Vec<String> {
    let mut nonces: Vec<u64> = (0..SENDERS)
        .map(|i| nonce(api, &sender(i).address()))
        .collect();
    let mut pending: Vec<String> = Vec::new();
    let mut committed = Vec::new();
    let start = Instant::now();
    let mut round = 0u64;
    while start.elapsed() < duration {
        let txs: Vec<String> = (0..SENDERS)
            .map(|i| {
                let key = sender(i);
                let to = recipients()[(i + round as usize) % 2];
                let tx = Transaction {
                    chain_id: chain_id.into(),
                    sender: key.public(),
                    nonce: nonces[i],
                    fee: 1_000,
                    messages: vec![Message::Transfer {
                        to,
                        amount: 1_000 + round as u128,
                    }],
                }
                .sign(&key);
                hex::encode(tx.encode())
            })
            .collect();
        let (status, body) = post(api, "/v1/txs", &json!({ "txs": txs }));
        assert_eq!(status, 202, "{body}");
        for (i, r) in body["results"].as_array().unwrap().iter().enumerate() {
            if let Some(h) = r["hash"].as_str() {
                nonces[i] += 1;
                pending.push(h.to_string());
            }
        }
        // Record what the API now reports committed.
        pending.retain(|h| match get(api, &format!("/v1/txs/{h}")) {
            Some(v) if v["status"] == "committed" => {
                committed.push(h.clone());
                false
            }
            _ => true,
        });
        round += 1;
    }
    committed
}

/// A chain at `home` funding the senders: (everyone holding tokens, the supply).
fn crash_chain(home: &Path) -> (Vec<Address>, u128) {
    let mut args: Vec<String> = ["genesis", "init", "--chain-id", "crash-test"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for i in 0..SENDERS {
        args.push("--account".into());
        args.push(format!("{}=1000AGR", sender(i).address()));
    }
    let out = agora_ok(home, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let validator: Address = out
        .lines()
        .find_map(|l| l.strip_prefix("Validator: "))
        .expect("genesis init names the validator")
        .parse()
        .unwrap();
    let supply = SENDERS as u128 * 1000 * AGR;
    let mut everyone: Vec<Address> = (0..SENDERS).map(|i| sender(i).address()).collect();
    everyone.extend(recipients());
    everyone.push(validator);
    (everyone, supply)
}

/// Every transaction in `committed` is still committed at its height, and the supply is whole.
fn nothing_lost(api: &str, committed: &BTreeMap<String, u64>, everyone: &[Address], supply: u128) {
    for (hash, height) in committed {
        let tx = get(api, &format!("/v1/txs/{hash}")).unwrap_or_else(|| panic!("lost {hash}"));
        assert_eq!(tx["status"], "committed");
        assert_eq!(tx["height"].as_u64().unwrap(), *height, "{hash} moved");
    }
    let total: u128 = everyone.iter().map(|a| balance_total(api, a)).sum();
    assert_eq!(total, supply, "supply conserved");
}

#[test]
fn sigkill_while_committing_loses_nothing_committed_and_conserves_supply() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let (everyone, supply) = crash_chain(home);
    let mut all_committed: BTreeMap<String, u64> = BTreeMap::new();
    for cycle in 0..3 {
        let node = NodeProc::start(home, 10);
        // Everything reported committed before any crash is still there, at the same height.
        nothing_lost(&node.api, &all_committed, &everyone, supply);

        let committed = stream_transfers(
            &node.api,
            "crash-test",
            Duration::from_millis(700 + 300 * cycle),
        );
        assert!(!committed.is_empty(), "the chain commits under load");
        for h in committed {
            let tx = get(&node.api, &format!("/v1/txs/{h}")).unwrap();
            all_committed.insert(h, tx["height"].as_u64().unwrap());
        }
        let height_before = node.height();
        node.kill();

        // Restart: it resumes at (at least) the last height it served, and goes on.
        let node = NodeProc::start(home, 10);
        assert!(node.height() >= height_before, "restart lost blocks");
        node.wait_height(height_before + 3);
        let tip = node.height();
        let mut prev = get(&node.api, &format!("/v1/blocks/{}", tip - 3)).unwrap();
        for h in tip - 2..=tip {
            let b = get(&node.api, &format!("/v1/blocks/{h}")).unwrap();
            assert_eq!(b["header"]["prev_hash"], prev["hash"], "chain links at {h}");
            prev = b;
        }
        node.kill();
    }
    assert!(
        all_committed.len() > 20,
        "only {} transactions were committed",
        all_committed.len()
    );
}

/// The disk fills up while the node commits (its database file may not grow past its size, as
/// `prlimit --fsize` sets): the node stops with a clear error instead of going on half-written,
/// and once it has room again it starts where it stopped, nothing committed lost.
#[test]
fn a_full_disk_stops_the_node_and_a_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let (everyone, supply) = crash_chain(home);
    let node = NodeProc::start(home, 10);
    let mut committed: BTreeMap<String, u64> = BTreeMap::new();
    for h in stream_transfers(&node.api, "crash-test", Duration::from_millis(500)) {
        let tx = get(&node.api, &format!("/v1/txs/{h}")).unwrap();
        committed.insert(h, tx["height"].as_u64().unwrap());
    }
    node.kill();

    // No room to grow: the first write past the file's size fails (EFBIG; the signal that would
    // kill the process instead is ignored, as a full disk sends none).
    let db = home.join("data/chain.redb");
    let size = std::fs::metadata(&db).unwrap().len();
    let fsize = format!("--fsize={size}");
    let mut node = NodeProc::start_in(
        home,
        10,
        &[
            "bash",
            "-c",
            "trap '' XFSZ; exec \"$@\"",
            "bash",
            "prlimit",
            &fsize,
        ],
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the node went on with a full disk"
        );
        // Transfers while there is room; what the node reports committed must survive.
        let keys: Vec<Keypair> = (0..SENDERS).map(sender).collect();
        for key in &keys {
            let Some(acc) = get(&node.api, &format!("/v1/accounts/{}", key.address())) else {
                continue;
            };
            let tx = Transaction {
                chain_id: "crash-test".into(),
                sender: key.public(),
                nonce: acc["nonce"].as_u64().unwrap(),
                fee: 1_000,
                messages: vec![Message::Transfer {
                    to: recipients()[0],
                    amount: 7,
                }],
            }
            .sign(key);
            let _ = agent()
                .post(&format!("{}/v1/txs", node.api))
                .send_json(json!({ "tx": hex::encode(tx.encode()) }));
            let h = tx.hash().to_hex();
            if let Some(v) = get(&node.api, &format!("/v1/txs/{h}"))
                && v["status"] == "committed"
            {
                committed.insert(h, v["height"].as_u64().unwrap());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "the node stopped with an error");
    assert!(std::fs::metadata(&db).unwrap().len() <= size);

    // Room again: it starts where it stopped and goes on.
    let node = NodeProc::start(home, 10);
    nothing_lost(&node.api, &committed, &everyone, supply);
    let height = node.height();
    node.wait_height(height + 3);
    let after = stream_transfers(&node.api, "crash-test", Duration::from_millis(300));
    assert!(!after.is_empty(), "the chain commits again");
}
