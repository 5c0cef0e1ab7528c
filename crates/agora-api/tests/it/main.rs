//! HTTP API tests against a real node and server on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use agora_chain::Node;
use agora_state::{Genesis, GenesisAccount, GenesisModel, MarketParams, Params};
use agora_store::Proof;
use agora_types::{
    AGR, EncryptionKey, Hash, JobParams, JobReceipt, JobRequest, Keypair, Message, ModelKind,
    ProviderInfo, SettledJob, Transaction, job_fee,
};
use serde_json::{Value, json};
use std::{
    io::{BufRead, Read, Write},
    sync::Arc,
    time::Duration,
};

struct Harness {
    base: String,
    node: Arc<Node>,
    agent: ureq::Agent,
    _node: agora_api::testing::TestNode,
}

const MODEL: Hash = Hash([0xAA; 32]);

fn key(name: &str) -> Keypair {
    Keypair::from_seed_label(name)
}

fn start() -> Harness {
    let genesis = Genesis::new("api-test")
        .with_params(Params {
            min_fee: 100,
            unbonding_period: 5,
        })
        .with_market(MarketParams {
            min_provider_stake: 10 * AGR,
            challenge_window: 2,
            ..MarketParams::default()
        })
        .with_accounts(vec![GenesisAccount {
            address: key("alice").address(),
            balance: 50 * AGR,
            bonded: 0,
        }])
        .with_models(vec![GenesisModel {
            id: MODEL,
            name: "test-chat".into(),
            kind: ModelKind::Chat,
        }]);
    let t = agora_api::testing::TestNode::start(&genesis, "api-test-validator");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    Harness {
        base: t.base.clone(),
        node: t.node.clone(),
        agent,
        _node: t,
    }
}

impl Harness {
    fn get(&self, path: &str) -> (u16, Value) {
        let mut r = self
            .agent
            .get(&format!("{}{path}", self.base))
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_json().unwrap())
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let mut r = self
            .agent
            .post(&format!("{}{path}", self.base))
            .send_json(body)
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_json().unwrap())
    }
}

fn transfer(nonce: u64, fee: u128, amount: u128) -> String {
    let t = Transaction {
        chain_id: "api-test".into(),
        sender: key("alice").public(),
        nonce,
        fee,
        messages: vec![Message::Transfer {
            to: key("bob").address(),
            amount,
        }],
    }
    .sign(&key("alice"));
    hex::encode(t.encode())
}

#[test]
fn submit_commit_and_read_everything_back() {
    let h = start();
    let (code, body) = h.post("/v1/txs", &json!({ "tx": transfer(0, 100, 2 * AGR) }));
    assert_eq!(code, 202, "{body}");
    let hash = body["hash"].as_str().unwrap().to_string();
    let (code, pending) = h.get(&format!("/v1/txs/{hash}"));
    assert_eq!((code, pending["status"].as_str()), (200, Some("pending")));

    h.node.produce_block(1_000).unwrap();
    let (code, tx) = h.get(&format!("/v1/txs/{hash}"));
    assert_eq!(code, 200);
    assert_eq!(tx["status"], "committed");
    assert_eq!(tx["height"], 1);
    assert_eq!(tx["receipt"]["success"], true);
    assert_eq!(tx["receipt"]["fee_paid"], "100");

    let (_, latest) = h.get("/v1/blocks/latest");
    let (_, one) = h.get("/v1/blocks/1");
    assert_eq!(latest["hash"], one["hash"]);
    assert_eq!(one["txs"][0]["hash"], hash.as_str());
    let (_, by_hash) = h.get(&format!("/v1/blocks/{}", one["hash"].as_str().unwrap()));
    assert_eq!(by_hash["header"]["height"], 1);

    let (_, status) = h.get("/v1/status");
    assert_eq!(status["chain_id"], "api-test");
    assert_eq!(status["height"], 1);
    assert_eq!(status["latest_block_hash"], one["hash"]);

    // The account proof checks against the header's state root, and not against another root.
    let bob = key("bob").address();
    let (code, acc) = h.get(&format!("/v1/accounts/{bob}?prove=true"));
    assert_eq!(code, 200, "{acc}");
    assert_eq!(acc["balance"], (2 * AGR).to_string());
    let proof: Proof = serde_json::from_value(acc["proof"].clone()).unwrap();
    let root: Hash = one["header"]["state_root"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let key_bytes = hex::decode(acc["proof"]["key"].as_str().unwrap()).unwrap();
    let value = hex::decode(acc["proof"]["value"].as_str().unwrap()).unwrap();
    assert!(proof.verify(&root, &key_bytes, Some(&value)));
    let (_, genesis) = h.get("/v1/blocks/0");
    let old_root: Hash = genesis["header"]["state_root"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(!proof.verify(&old_root, &key_bytes, Some(&value)));

    let (code, metrics) = {
        let mut r = h.agent.get(&format!("{}/metrics", h.base)).call().unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    assert_eq!(code, 200);
    assert!(metrics.contains("agora_height 1"), "{metrics}");
    assert!(metrics.contains("agora_txs_committed_total 1"), "{metrics}");
    assert_eq!(h.get("/health").1["status"], "ok");
}

#[test]
fn errors_are_json_with_codes_and_statuses() {
    let h = start();
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({ "tx": "zz" }), 400, "malformed_tx"),
        (json!({ "tx": "00ff" }), 400, "malformed_tx"),
        // Over the limit of a proof-carrying transaction (512 KiB).
        (json!({ "tx": "00".repeat(530_000) }), 413, "tx_too_large"),
        (json!({ "nope": 1 }), 400, "malformed_request"),
        (json!({ "tx": transfer(3, 100, 1) }), 400, "nonce_too_high"),
        (json!({ "tx": transfer(0, 1, 1) }), 400, "fee_too_low"),
        (
            json!({ "tx": transfer(0, 100, 51 * AGR) }),
            400,
            "insufficient_funds",
        ),
    ];
    for (body, status, code) in cases {
        let (s, b) = h.post("/v1/txs", &body);
        assert_eq!((s, b["code"].as_str().unwrap()), (status, code), "{b}");
        assert!(!b["message"].as_str().unwrap().is_empty());
    }
    let good = transfer(0, 100, 1);
    assert_eq!(h.post("/v1/txs", &json!({ "tx": good })).0, 202);
    let (s, b) = h.post("/v1/txs", &json!({ "tx": good }));
    assert_eq!((s, b["code"].as_str().unwrap()), (409, "duplicate_tx"));

    // A body over the limit gets a JSON 413, however early the server answers: the body is
    // written from another thread, ignoring the write error when the server closes first.
    let mut conn = std::net::TcpStream::connect(h.base.trim_start_matches("http://")).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut writer = conn.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let body = vec![b' '; 9_000_000];
        let head = format!(
            "POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = writer
            .write_all(head.as_bytes())
            .and_then(|_| writer.write_all(&body));
    });
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("\"code\":\"request_too_large\""),
        "{answer}"
    );
    sender.join().unwrap();
    assert_eq!(h.get("/v1/blocks/99").1["code"], "block_not_found");
    assert_eq!(h.get("/v1/blocks/xyz").1["code"], "invalid_block_id");
    assert_eq!(
        h.get(&format!("/v1/txs/{}", "ab".repeat(32))).1["code"],
        "tx_not_found"
    );
    assert_eq!(h.get("/v1/txs/nothex").0, 400);
    assert_eq!(h.get("/v1/accounts/agora1xyz").1["code"], "invalid_address");
    let (s, b) = h.get(&format!("/v1/accounts/{}", key("nobody").address()));
    assert_eq!((s, b["code"].as_str().unwrap()), (404, "unknown_account"));
    assert_eq!(h.get("/v2/whatever").0, 404);
    assert_eq!(
        h.node.snapshot().unwrap().height().unwrap(),
        Some(0),
        "nothing was committed"
    );
}

#[test]
fn batch_submission_reports_each_transaction() {
    let h = start();
    let (s, b) = h.post(
        "/v1/txs",
        &json!({ "txs": [transfer(0, 100, 1), "zz", transfer(1, 100, 1), transfer(5, 100, 1)] }),
    );
    assert_eq!(s, 202);
    let r = b["results"].as_array().unwrap();
    assert!(r[0]["hash"].is_string());
    assert_eq!(r[1]["code"], "malformed_tx");
    assert!(r[2]["hash"].is_string());
    assert_eq!(r[3]["code"], "nonce_too_high");
    assert_eq!(h.node.mempool_len(), 2);
}

#[test]
fn block_stream_delivers_new_blocks() {
    let h = start();
    let resp = h
        .agent
        .get(&format!("{}/v1/events/blocks", h.base))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let node = h.node.clone();
    let producer = std::thread::spawn(move || {
        for i in 0..3 {
            std::thread::sleep(Duration::from_millis(100));
            node.produce_block(1_000 + i).unwrap();
        }
    });
    let mut reader = std::io::BufReader::new(resp.into_body().into_reader());
    let mut heights = Vec::new();
    let mut line = String::new();
    while heights.len() < 3 {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "stream ended early"
        );
        if let Some(data) = line.strip_prefix("data:") {
            let v: Value = serde_json::from_str(data.trim()).unwrap();
            heights.push(v["height"].as_u64().unwrap());
        }
    }
    producer.join().unwrap();
    assert_eq!(heights, vec![1, 2, 3]);
}

fn signed(who: &str, nonce: u64, messages: Vec<Message>) -> String {
    let t = Transaction {
        chain_id: "api-test".into(),
        sender: key(who).public(),
        nonce,
        // The minimum fee per unit of work, times the units.
        fee: 100 * u128::from(agora_types::work_units(&messages)),
        messages,
    }
    .sign(&key(who));
    hex::encode(t.encode())
}

#[test]
fn market_state_is_readable_providers_models_escrow_and_jobs() {
    let h = start();
    let (alice, bob) = (key("alice").address(), key("bob").address());
    let submit = |tx: String| {
        let (code, body) = h.post("/v1/txs", &json!({ "tx": tx }));
        assert_eq!(code, 202, "{body}");
    };
    submit(transfer(0, 100, 5 * AGR));
    h.node.produce_block(1_000).unwrap();
    let info = ProviderInfo {
        models: vec![MODEL],
        price_input_per_1k: 1_000,
        price_output_per_1k: 3_000,
        endpoint: "http://127.0.0.1:1".into(),
        encryption_key: EncryptionKey([1; 32]),
    };
    submit(signed(
        "alice",
        1,
        vec![Message::RegisterProvider {
            stake: 10 * AGR,
            info,
        }],
    ));
    submit(signed(
        "bob",
        0,
        vec![Message::EscrowDeposit { amount: AGR }],
    ));
    h.node.produce_block(2_000).unwrap();

    let request = JobRequest {
        chain_id: "api-test".into(),
        client: key("bob").public(),
        provider: alice,
        model: MODEL,
        input_hash: Hash::digest(b"prompt"),
        params: JobParams::default(),
        max_fee: 1_000,
        nonce: Hash([3; 32]),
        expiry_height: 50,
    };
    let receipt = JobReceipt {
        request_hash: request.hash(),
        output_hash: Hash::digest(b"answer"),
        input_tokens: 10,
        output_tokens: 20,
        fee: job_fee(1_000, 3_000, 10, 20).unwrap(),
    };
    let job_id = request.id();
    let job = SettledJob {
        request: request.sign(&key("bob")),
        receipt: receipt.sign(&key("alice")),
    };
    submit(signed(
        "alice",
        2,
        vec![Message::SettleJobs { jobs: vec![job] }],
    ));
    h.node.produce_block(3_000).unwrap();

    let (code, list) = h.get("/v1/market/providers");
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["providers"].as_array().unwrap().len(), 1);
    assert_eq!(list["providers"][0]["address"], alice.to_string());
    assert_eq!(list["providers"][0]["stake"], (10 * AGR).to_string());
    assert_eq!(list["providers"][0]["jobs_settled"], 1);
    let (code, one) = h.get(&format!("/v1/market/providers/{alice}"));
    assert_eq!(code, 200);
    assert_eq!(one["provider"]["info"]["endpoint"], "http://127.0.0.1:1");

    let (_, models) = h.get("/v1/market/models");
    assert_eq!(models["models"][0]["id"], MODEL.to_hex());
    assert_eq!(models["models"][0]["kind"], "chat");
    assert_eq!(
        h.get(&format!("/v1/market/models/{MODEL}")).1["name"],
        "test-chat"
    );

    // A model joins by its entry: registered, then its source published by its registrant; the
    // registry shows where to fetch it. A second model under a taken name is refused.
    let joined = Hash([0x5A; 32]);
    let source = agora_types::ModelSource {
        package: "llm-tiny-q4km".into(),
        version: "1.2.0".into(),
        wheel_sha256: Hash([0x77; 32]),
        file: "llm_tiny_q4km/tiny.Q4_K_M.gguf".into(),
        quantization: "Q4_K_M".into(),
    };
    submit(signed(
        "bob",
        1,
        vec![
            Message::RegisterModel {
                id: joined,
                name: "tiny-q4km".into(),
                kind: agora_types::ModelKind::Chat,
            },
            Message::PublishModelSource {
                id: joined,
                source: source.clone(),
            },
        ],
    ));
    submit(signed(
        "alice",
        3,
        vec![Message::RegisterModel {
            id: Hash([0x5B; 32]),
            name: "tiny-q4km".into(),
            kind: agora_types::ModelKind::Chat,
        }],
    ));
    h.node.produce_block(3_500).unwrap();
    let (code, entry) = h.get(&format!("/v1/market/models/{joined}"));
    assert_eq!(code, 200, "{entry}");
    assert_eq!(entry["name"], "tiny-q4km");
    assert_eq!(
        serde_json::from_value::<agora_types::ModelSource>(entry["source"].clone()).unwrap(),
        source
    );
    assert_eq!(
        h.get(&format!("/v1/market/models/{}", Hash([0x5B; 32]))).0,
        404,
        "the taken name was refused"
    );
    assert!(
        h.get(&format!("/v1/market/models/{MODEL}")).1["source"].is_null(),
        "no source published"
    );

    // 10 tokens at 1,000 and 20 at 3,000 per 1,000: 10 + 60 = 70.
    let (_, escrow) = h.get(&format!("/v1/market/escrow/{bob}"));
    assert_eq!(escrow["escrow"]["balance"], (AGR - 70).to_string());
    let job_path = format!("/v1/market/jobs/{job_id}");
    let (code, job) = h.get(&job_path);
    assert_eq!(code, 200, "{job}");
    assert_eq!(
        (job["state"].as_str(), job["job"]["fee"].as_str()),
        (Some("pending"), Some("70"))
    );
    h.node.produce_block(4_000).unwrap();
    h.node.produce_block(5_000).unwrap();
    assert_eq!(h.get(&job_path).1["state"], "released");

    assert_eq!(
        h.get(&format!("/v1/market/providers/{bob}")).1["code"],
        "unknown_provider"
    );
    assert_eq!(h.get(&format!("/v1/market/jobs/{}", Hash([4; 32]))).0, 404);
    assert_eq!(h.get("/v1/market/escrow/nope").0, 400);
}

#[test]
fn an_account_history_pages_newest_first_through_the_api() {
    let h = start();
    let (alice, bob) = (key("alice").address(), key("bob").address());
    let mut hashes = Vec::new();
    for nonce in 0..3 {
        let (code, body) = h.post("/v1/txs", &json!({ "tx": transfer(nonce, 100, AGR) }));
        assert_eq!(code, 202, "{body}");
        hashes.push(body["hash"].as_str().unwrap().to_string());
        h.node.produce_block(1_000 * (nonce + 1)).unwrap();
    }
    // Both parties see the three transfers, newest first, once indexed.
    h.node.index_accounts_now().unwrap();
    for who in [alice, bob] {
        let (code, page) = h.get(&format!("/v1/accounts/{who}/txs"));
        assert_eq!(code, 200, "{page}");
        let got: Vec<&str> = page["txs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["hash"].as_str().unwrap())
            .collect();
        assert_eq!(got, vec![&hashes[2], &hashes[1], &hashes[0]]);
        assert_eq!(page["txs"][0]["kind"], "transfer");
        assert_eq!(page["txs"][0]["sender"], alice.to_string());
        assert_eq!(page["txs"][0]["success"], true);
    }
    // Two at a time: the cursor leads to the rest.
    let (_, first) = h.get(&format!("/v1/accounts/{bob}/txs?limit=2"));
    assert_eq!(first["txs"].as_array().unwrap().len(), 2);
    let next = first["next"].as_str().unwrap();
    let (_, rest) = h.get(&format!("/v1/accounts/{bob}/txs?limit=2&before={next}"));
    assert_eq!(rest["txs"][0]["hash"].as_str(), Some(hashes[0].as_str()));
    assert!(rest.get("next").is_none(), "{rest}");
    // A stranger has none; bad input is refused with a reason.
    let (code, empty) = h.get(&format!("/v1/accounts/{}/txs", key("carol").address()));
    assert_eq!((code, empty["txs"].as_array().unwrap().len()), (200, 0));
    let (code, err) = h.get(&format!("/v1/accounts/{bob}/txs?before=soon"));
    assert_eq!((code, err["code"].as_str()), (400, Some("invalid_cursor")));
    let (code, err) = h.get("/v1/accounts/nobody/txs");
    assert_eq!((code, err["code"].as_str()), (400, Some("invalid_address")));
}

#[test]
fn subnets_and_metagraphs_are_readable_and_in_the_metrics() {
    use agora_types::{SubnetParam, SubnetTask, weights_commitment};
    let genesis = Genesis::new("api-test")
        .with_params(Params {
            min_fee: 100,
            unbonding_period: 5,
        })
        .with_accounts(["owner", "val", "miner"].map(|who| GenesisAccount {
            address: key(who).address(),
            balance: 1_000 * AGR,
            bonded: 0,
        }));
    let t = agora_api::testing::TestNode::start(&genesis, "api-test-validator");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let h = Harness {
        base: t.base.clone(),
        node: t.node.clone(),
        agent,
        _node: t,
    };
    let nonces = std::cell::RefCell::new(std::collections::BTreeMap::<&str, u64>::new());
    let submit = |who: &'static str, messages: Vec<Message>| {
        let nonce = *nonces.borrow().get(who).unwrap_or(&0);
        nonces.borrow_mut().insert(who, nonce + 1);
        let (code, body) = h.post("/v1/txs", &json!({ "tx": signed(who, nonce, messages) }));
        assert_eq!(code, 202, "{body}");
    };
    let height = std::cell::Cell::new(0u64);
    let block = || {
        height.set(height.get() + 1);
        h.node.produce_block(height.get() * 1_000).unwrap();
    };
    submit(
        "owner",
        vec![Message::CreateSubnet {
            name: "chat".into(),
            task: SubnetTask::Chat,
            max_lock: 100 * AGR,
        }],
    );
    block();
    submit(
        "owner",
        vec![Message::SetSubnetParam {
            netuid: 0,
            param: SubnetParam::Tempo(10),
        }],
    );
    for who in ["val", "miner"] {
        submit(
            who,
            vec![Message::RegisterNeuron {
                netuid: 0,
                endpoint: format!("http://127.0.0.1:1/{who}"),
                max_burn: AGR,
            }],
        );
    }
    block();
    submit(
        "val",
        vec![Message::AddSubnetStake {
            netuid: 0,
            hotkey: key("val").address(),
            amount: 100 * AGR,
        }],
    );
    let salt = Hash([5; 32]);
    let commitment = weights_commitment(0, &key("val").address(), &[1], &[7], &salt);
    submit(
        "val",
        vec![Message::CommitWeights {
            netuid: 0,
            commitment,
        }],
    );
    block();
    // The tempo was set before anyone registered: the first epoch is at 2 + 10.
    while height.get() < 12 {
        block();
    }
    submit(
        "val",
        vec![Message::RevealWeights {
            netuid: 0,
            uids: vec![1],
            weights: vec![7],
            salt,
        }],
    );
    while height.get() < 22 {
        block();
    }

    let (code, all) = h.get("/v1/subnets");
    assert_eq!(code, 200, "{all}");
    assert_eq!(all["subnets"][0]["name"], "chat");
    assert_eq!(all["subnets"][0]["n"], 2);
    assert_eq!(all["subnets"][0]["next_epoch"], 32);
    let lock: u128 = all["lock_cost"].as_str().unwrap().parse().unwrap();
    assert!(lock > 100 * AGR, "the lock cost doubled: {lock}");
    let minted: u128 = all["emission"]["minted"].as_str().unwrap().parse().unwrap();
    assert!(minted > 0);
    let (code, one) = h.get("/v1/subnets/0");
    assert_eq!(code, 200, "{one}");
    assert_eq!(one["subnet"]["params"]["tempo"], 10);
    assert_eq!(one["history"].as_array().unwrap().len(), 2);
    let (code, graph) = h.get("/v1/subnets/0/metagraph");
    assert_eq!(code, 200, "{graph}");
    let neurons = graph["neurons"].as_array().unwrap();
    assert_eq!(neurons.len(), 2);
    assert_eq!(neurons[0]["validator_permit"], true);
    assert_eq!(neurons[0]["weights"], json!([[1, 65535]]));
    assert_eq!(neurons[1]["incentive"], 1.0);
    assert_eq!(neurons[1]["endpoint"], "http://127.0.0.1:1/miner");
    assert!(neurons[1]["emission"].as_str().unwrap() != "0");

    let (code, body) = h.get("/v1/subnets/9");
    assert_eq!((code, body["code"].as_str()), (404, Some("unknown_subnet")));
    let (code, body) = h.get("/v1/subnets/x/metagraph");
    assert_eq!((code, body["code"].as_str()), (400, Some("invalid_netuid")));

    let metrics = h
        .agent
        .get(&format!("{}/metrics", h.base))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("agora_neuron_incentive{netuid=\"0\",uid=\"1\"} 1.0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("agora_subnet_uids{netuid=\"0\"} 2.0"),
        "{metrics}"
    );
    assert!(metrics.trim_end().ends_with("# EOF"));
}
