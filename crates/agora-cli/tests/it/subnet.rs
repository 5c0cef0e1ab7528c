//! `agora subnet …` against a real node: create, tune, register, stake, commit and reveal
//! weights, and read the metagraph an epoch wrote.

use crate::*;
use serde_json::Value;
use std::time::{Duration, Instant};

fn json(home: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&agora_ok(home, args)).unwrap()
}

fn fails_saying(home: &Path, args: &[&str], needle: &str) {
    let out = agora(home, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "agora {args:?} succeeded");
    assert!(stderr.contains(needle), "agora {args:?}: {stderr}");
}

/// Polls the subnet until it has run `epochs` epochs.
fn wait_epochs(home: &Path, api: &str, epochs: u64) {
    let start = Instant::now();
    loop {
        let s = json(home, &["subnet", "show", "0", "--node", api, "--json"]);
        if s["subnet"]["epochs"].as_u64().unwrap() >= epochs {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no epoch {epochs}: {s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn subnet_commands_create_register_stake_weigh_and_read_the_metagraph() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    for w in ["owner", "val", "miner"] {
        agora_ok(home, &["wallet", "new", w]);
    }
    let accounts: Vec<String> = ["owner", "val", "miner"]
        .iter()
        .map(|w| {
            let v = json(home, &["wallet", "show", w, "--json"]);
            format!("{}=1000AGR", v["address"].as_str().unwrap())
        })
        .collect();
    let mut args = vec!["genesis", "init", "--chain-id", "subnet-cli"];
    for a in &accounts {
        args.extend(["--account", a.as_str()]);
    }
    agora_ok(home, &args);
    let node = NodeProc::start(home, 50);
    let api = node.api.clone();
    let tx = |from: &str, rest: &[&str]| {
        let mut args = vec!["subnet"];
        args.extend(rest);
        args.extend(["--from", from, "--node", &api]);
        agora_ok(home, &args)
    };
    tx("owner", &["create", "--name", "chat", "--task", "chat"]);
    tx(
        "owner",
        &[
            "set-hyperparameter",
            "0",
            "--name",
            "tempo",
            "--value",
            "100",
        ],
    );
    tx(
        "owner",
        &[
            "set-hyperparameter",
            "0",
            "--name",
            "weights_rate_limit",
            "--value",
            "0",
        ],
    );
    fails_saying(
        home,
        &[
            "subnet",
            "set-hyperparameter",
            "0",
            "--name",
            "tempo",
            "--value",
            "1",
            "--from",
            "owner",
            "--node",
            &api,
        ],
        "tempo must be within 10 and 100000",
    );
    fails_saying(
        home,
        &[
            "subnet",
            "set-hyperparameter",
            "0",
            "--name",
            "tempo",
            "--value",
            "50",
            "--from",
            "val",
            "--node",
            &api,
        ],
        "only the owner",
    );
    tx(
        "val",
        &["register", "0", "--endpoint", "http://127.0.0.1:9/val"],
    );
    tx(
        "miner",
        &["register", "0", "--endpoint", "http://127.0.0.1:9/miner"],
    );
    tx("val", &["stake", "0", "--amount", "100AGR"]);
    tx("val", &["commit-weights", "0", "--weights", "1=5"]);
    fails_saying(
        home,
        &[
            "subnet",
            "reveal-weights",
            "0",
            "--from",
            "val",
            "--node",
            &api,
        ],
        "too early",
    );
    wait_epochs(home, &api, 1);
    tx("val", &["reveal-weights", "0"]);
    wait_epochs(home, &api, 2);

    let graph = json(
        home,
        &["subnet", "metagraph", "0", "--node", &api, "--json"],
    );
    let neurons = graph["neurons"].as_array().unwrap();
    assert_eq!(neurons.len(), 2);
    assert_eq!(neurons[1]["incentive"], 1.0, "{graph}");
    assert_eq!(neurons[0]["validator_permit"], true);
    let table = agora_ok(home, &["subnet", "metagraph", "0", "--node", &api]);
    assert!(
        table.contains("incentive") && table.contains("1.00000"),
        "{table}"
    );
    let list = agora_ok(home, &["subnet", "list", "--node", &api]);
    assert!(
        list.contains("1 subnet(s)") && list.contains("chat"),
        "{list}"
    );
    fails_saying(
        home,
        &["subnet", "show", "9", "--node", &api],
        "no subnet 9",
    );
    drop(node);
}
