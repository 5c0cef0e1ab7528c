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
    // The daemons say what is missing before they start.
    fails_saying(
        home,
        &["subnet", "validate", "0", "--from", "owner", "--node", &api],
        "is not registered on subnet 0",
    );
    fails_saying(
        home,
        &["subnet", "mine", "0", "--node", &api],
        "not enough for the registration burn",
    );
    drop(node);
}

/// Two consecutive epochs of `netuid` (the last ones) paid miners by incentive.
fn paid_twice(api: &str, netuid: u16) -> Option<Value> {
    let s = get(api, &format!("/v1/subnets/{netuid}"))?;
    let history = s["history"].as_array()?;
    let paid = |e: &Value| {
        e["incentive"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x.as_u64().unwrap_or(0) > 0))
    };
    (history.len() >= 2 && history[history.len() - 2..].iter().all(paid)).then_some(s)
}

/// What each UID earned over the subnet's recorded epochs.
fn earned(subnet: &Value) -> Vec<u128> {
    let mut total = Vec::new();
    for e in subnet["history"].as_array().unwrap() {
        for (i, x) in e["per_uid"].as_array().unwrap().iter().enumerate() {
            if total.len() <= i {
                total.resize(i + 1, 0u128);
            }
            total[i] += u128::from(x.as_u64().unwrap());
        }
    }
    total
}

#[test]
fn on_the_devnet_the_better_model_and_the_better_forecaster_earn_more() {
    if !crate::infer::models_available() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("devnet.log");
    let _show = crate::market::ShowLogOnFailure(log_path.clone());
    let (mut child, api, gateway) =
        crate::market::start_devnet(home.path(), &log_path, "info", &[]);
    let start = Instant::now();
    let (chat, forecast) = loop {
        if let (Some(c), Some(f)) = (paid_twice(&api, 0), paid_twice(&api, 1)) {
            break (c, f);
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "the subnets did not pay two epochs by incentive in time"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // Chat: which miner serves the pinned model and which the cut one.
    let graph = get(&api, "/v1/subnets/0/metagraph").unwrap();
    let models = get(&api, "/v1/market/models").unwrap();
    let cut: Vec<String> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"].as_str().unwrap().contains("layers"))
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    let mut real = None;
    let mut weak = None;
    for n in graph["neurons"].as_array().unwrap() {
        let hotkey = n["hotkey"].as_str().unwrap();
        let Some(p) = get(&api, &format!("/v1/market/providers/{hotkey}")) else {
            continue;
        };
        let serves_cut = p["provider"]["info"]["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| cut.contains(&m.as_str().unwrap().to_string()));
        let uid = n["uid"].as_u64().unwrap() as usize;
        if serves_cut {
            weak = Some(uid);
        } else {
            real = Some(uid);
        }
    }
    let (real, weak) = (real.expect("the real miner"), weak.expect("the weak miner"));
    let paid = earned(&chat);
    eprintln!(
        "chat subnet: the pinned model earned {} base units, the cut one {}",
        paid[real], paid[weak]
    );
    assert!(
        paid[real] > 2 * paid[weak],
        "real {} vs weak {}: {chat}",
        paid[real],
        paid[weak]
    );
    // The gateway routes `subnet:0` to the miner with the highest incentive; the receipt
    // names it.
    let key = std::fs::read_to_string(home.path().join("config/gateway_api_key")).unwrap();
    let chat = |model: &str| {
        let mut r = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent()
            .post(&format!("{gateway}/v1/chat/completions"))
            .header("Authorization", &format!("Bearer {}", key.trim()))
            .send_json(serde_json::json!({
                "model": model,
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "max_tokens": 8
            }))
            .unwrap();
        let status = r.status().as_u16();
        (status, r.body_mut().read_json::<Value>().unwrap())
    };
    let (status, body) = chat("subnet:0");
    assert_eq!(status, 200, "{body}");
    let best = graph["neurons"]
        .as_array()
        .unwrap()
        .iter()
        .max_by(|a, b| {
            a["incentive"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["incentive"].as_f64().unwrap())
        })
        .unwrap()["hotkey"]
        .clone();
    assert_eq!(body["agora"]["provider"], best, "{body}");
    let (status, body) = chat("subnet:9");
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "model_not_found", "{body}");
    let (status, _) = chat("subnet:x");
    assert_eq!(status, 400);

    // Forecast: the baseline (the miner the validator staked on) predicts the chain's fees
    // from the last window, the other always says 1,000 base units. Once the chain's traffic has
    // settled (its first windows hold the devnet's setup), the baseline wins epoch after epoch.
    let graph = get(&api, "/v1/subnets/1/metagraph").unwrap();
    let neurons = graph["neurons"].as_array().unwrap();
    let baseline = neurons
        .iter()
        .position(|n| n["stake"].as_str() != Some("0"))
        .expect("the staked baseline");
    let constant = 1 - baseline;
    let start = Instant::now();
    loop {
        let s = get(&api, "/v1/subnets/1").unwrap();
        let history = s["history"].as_array().unwrap();
        let wins = |e: &Value| {
            let i = e["incentive"].as_array().unwrap();
            i[baseline].as_u64().unwrap() > i[constant].as_u64().unwrap()
        };
        if history.len() >= 2 && history[history.len() - 2..].iter().all(wins) {
            let last = &history[history.len() - 1];
            eprintln!(
                "forecast subnet, last epoch: {} base units of fees; incentive baseline {}, constant {}",
                last["observed"], last["incentive"][baseline], last["incentive"][constant]
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "the baseline never won two epochs in a row: {forecast}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    sigterm(child.id());
    assert!(child.wait().unwrap().success());
}
