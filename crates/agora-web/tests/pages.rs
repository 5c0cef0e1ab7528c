//! The web app's pages against a real node serving them beside its API on 127.0.0.1: each page
//! answers HTML with what the chain holds, and a page that cannot be shown says why.

#![allow(clippy::unwrap_used)]

use agora_api::testing::TestNode;
use agora_node_api::AccountProof;
use agora_state::{Genesis, GenesisAccount, GenesisModel};
use agora_types::{
    AGR, EncryptionKey, Hash, Keypair, Message, ModelKind, ProviderInfo, Transaction, VerifierInfo,
};
use std::time::Duration;

fn key(name: &str) -> Keypair {
    Keypair::from_seed_label(name)
}

const CHAIN: &str = "web-test";

fn start() -> TestNode {
    let genesis = Genesis::new(CHAIN)
        .with_accounts(vec![GenesisAccount {
            address: key("alice").address(),
            balance: 500 * AGR,
            bonded: 0,
        }])
        .with_models(vec![GenesisModel {
            id: Hash([0xAB; 32]),
            name: "test-chat".into(),
            kind: ModelKind::Chat,
        }])
        .with_model_source(
            Hash([0xAB; 32]),
            agora_types::ModelSource {
                package: "llm-test-chat".into(),
                version: "3.1".into(),
                wheel_sha256: Hash([0xCD; 32]),
                file: "llm_test_chat/test.Q4_K_M.gguf".into(),
                quantization: "Q4_K_M".into(),
            },
        );
    TestNode::start_with_pages(&genesis, "web-test-validator", agora_web::router)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// Status, content type and body of `GET path`.
fn get(t: &TestNode, path: &str) -> (u16, String, String) {
    let mut r = agent().get(&format!("{}{path}", t.base)).call().unwrap();
    let kind = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let status = r.status().as_u16();
    let body = match location {
        Some(l) => l,
        None => r.body_mut().read_to_string().unwrap(),
    };
    (status, kind, body)
}

fn page(t: &TestNode, path: &str) -> String {
    let (status, kind, body) = get(t, path);
    assert_eq!(status, 200, "{path}: {body}");
    assert!(kind.starts_with("text/html"), "{path}: {kind}");
    assert!(
        body.contains("<nav aria-label=\"Main\">"),
        "{path}: no layout"
    );
    body
}

fn transfer(nonce: u64) -> Transaction {
    Transaction {
        chain_id: CHAIN.into(),
        sender: key("alice").public(),
        nonce,
        fee: 1_000_000,
        messages: vec![Message::Transfer {
            to: key("bob").address(),
            amount: 2 * AGR,
        }],
    }
}

/// What an HTML text node holds, its escapes undone.
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[test]
fn explorer_pages_show_blocks_transactions_and_accounts_with_a_proof() {
    let t = start();
    let signed = transfer(0).sign(&key("alice"));
    let hash = signed.hash();
    let r = agent()
        .post(&format!("{}/v1/txs", t.base))
        .send_json(serde_json::json!({ "tx": hex::encode(signed.encode()) }))
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    // Pending first, then committed.
    assert!(page(&t, &format!("/txs/{hash}")).contains("pending in the mempool"));
    t.block();
    t.block();

    let home = page(&t, "/");
    assert!(
        home.contains(&format!("<tr data-hash=\"{hash}\" data-height=\"1\">")),
        "the transfer among the latest transactions"
    );
    // The live table's script reads a block's rows as JSON.
    let rows: serde_json::Value = agent()
        .get(&format!("{}/explorer/blocks/1/txs", t.base))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(rows[0]["hash"], hash.to_string());
    assert_eq!(rows[0]["kind"], "transfer");
    assert_eq!(rows[0]["sender"], key("alice").address().to_string());
    assert!(home.contains("data-live-blocks"), "the live table");
    assert!(
        home.contains("href=\"/blocks/2\""),
        "the latest block is listed"
    );
    for chart in [
        "Transactions per block",
        "Fees per block",
        "Jobs settled per block",
    ] {
        assert!(home.contains(chart), "the {chart} chart");
    }

    let block = page(&t, "/blocks/1");
    assert!(block.contains(&format!("href=\"/txs/{hash}\"")), "{block}");
    assert!(block.contains("transfer") && block.contains("ok"));

    let tx = page(&t, &format!("/txs/{hash}"));
    assert!(tx.contains("committed, succeeded"), "{tx}");
    assert!(tx.contains(&key("alice").address().to_string()));
    assert!(tx.contains("href=\"/blocks/1\""));

    // The account page's proof is the API's, and it verifies against the state root.
    let bob = key("bob").address();
    t.node.index_accounts_now().unwrap();
    let account = page(&t, &format!("/accounts/{bob}"));
    assert!(account.contains("2 AGR"), "bob's balance");
    assert!(
        account.contains(&format!("href=\"/txs/{hash}\"")),
        "bob's history lists the transfer: {account}"
    );
    let start = account.find("data-proof-json>").unwrap() + "data-proof-json>".len();
    let end = start + account[start..].find("</textarea>").unwrap();
    let proof: AccountProof = serde_json::from_str(&unescape(&account[start..end])).unwrap();
    let key_bytes = hex::decode(&proof.key).unwrap();
    let value = hex::decode(&proof.value).unwrap();
    assert!(
        proof
            .proof
            .verify(&proof.state_root, &key_bytes, Some(&value))
    );
    let latest = t.node.snapshot().unwrap().latest_block().unwrap().unwrap();
    assert_eq!(proof.state_root, latest.header.state_root);

    // The search box goes straight to the object.
    assert_eq!(get(&t, "/search?q=1").2, "/blocks/1");
    assert_eq!(
        get(&t, &format!("/search?q={hash}")).2,
        format!("/txs/{hash}")
    );
    assert_eq!(
        get(&t, &format!("/search?q={bob}")).2,
        format!("/accounts/{bob}")
    );
    let block_hash = latest.hash();
    assert_eq!(
        get(&t, &format!("/search?q={block_hash}")).2,
        format!("/blocks/{block_hash}")
    );
}

fn submit(t: &TestNode, tx: Transaction, signer: &str) {
    let signed = tx.sign(&key(signer));
    let r = agent()
        .post(&format!("{}/v1/txs", t.base))
        .send_json(serde_json::json!({ "tx": hex::encode(signed.encode()) }))
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
}

#[test]
fn market_pages_list_models_providers_and_verifiers() {
    let t = start();
    let market = page(&t, "/market");
    assert!(market.contains("No provider has registered yet."));
    let models = page(&t, "/market/models");
    assert!(models.contains("test-chat"), "{models}");
    assert!(
        models.contains("llm-test-chat==3.1") && models.contains("Q4_K_M"),
        "the model's on-chain source: {models}"
    );
    assert!(page(&t, "/market/verifiers").contains("No verifier has registered yet."));

    // Alice registers as a provider and as a verifier of the model.
    let message = |nonce, m| Transaction {
        chain_id: CHAIN.into(),
        sender: key("alice").public(),
        nonce,
        fee: 1_000_000,
        messages: vec![m],
    };
    let model = Hash([0xAB; 32]);
    submit(
        &t,
        message(
            0,
            Message::RegisterProvider {
                stake: 100 * AGR,
                info: ProviderInfo {
                    models: vec![model],
                    price_input_per_1k: 1_000,
                    price_output_per_1k: 3_000,
                    endpoint: "http://127.0.0.1:1".into(),
                    encryption_key: EncryptionKey([1; 32]),
                },
            },
        ),
        "alice",
    );
    submit(
        &t,
        message(
            1,
            Message::RegisterVerifier {
                stake: 100 * AGR,
                info: VerifierInfo {
                    models: vec![model],
                    encryption_key: EncryptionKey([2; 32]),
                },
            },
        ),
        "alice",
    );
    t.block();
    let alice = key("alice").address();
    let market = page(&t, "/market");
    assert!(
        market.contains(&format!("href=\"/market/providers/{alice}\"")),
        "{market}"
    );
    assert!(
        market.contains("test-chat") && market.contains("100 AGR"),
        "{market}"
    );
    assert!(
        market.contains("Jobs settled per provider: 1 values"),
        "{market}"
    );
    let provider = page(&t, &format!("/market/providers/{alice}"));
    assert!(provider.contains("127.0.0.1:1</dd>"), "{provider}");
    assert!(
        provider.contains("No latency measurements: no gateway is known to this node."),
        "{provider}"
    );
    assert!(provider.contains("No job settled yet."), "{provider}");
    let models = page(&t, "/market/models");
    assert!(
        models.contains("<td>1</td>"),
        "one provider serves it: {models}"
    );
    let verifiers = page(&t, "/market/verifiers");
    assert!(
        verifiers.contains(&format!("href=\"/market/verifiers/{alice}\"")),
        "{verifiers}"
    );
    let account = page(&t, &format!("/accounts/{alice}"));
    assert!(
        account.contains("compute provider") && account.contains("verifier"),
        "{account}"
    );
    let verifier = page(&t, &format!("/market/verifiers/{alice}"));
    assert!(
        verifier.contains("No open check waits on this verifier."),
        "{verifier}"
    );
    assert!(
        verifier.contains("test-chat"),
        "the models it checks: {verifier}"
    );
}

#[test]
fn what_cannot_be_shown_is_a_page_that_says_why() {
    let t = start();
    for (path, status, says) in [
        ("/blocks/999", 404, "no block 999; the latest height is 0"),
        ("/blocks/nonsense", 400, "is not a height, a block hash"),
        ("/txs/zz", 400, "Not understood"),
        (
            &format!("/txs/{}", Hash([7; 32])),
            404,
            "no committed or pending transaction",
        ),
        ("/accounts/notanaddress", 400, "Not understood"),
        (
            &format!("/accounts/{}", key("nobody").address()),
            404,
            "has never received funds",
        ),
        (
            &format!("/market/providers/{}", key("nobody").address()),
            404,
            "is not a registered provider",
        ),
        (
            &format!("/market/jobs/{}", Hash([9; 32])),
            404,
            "no settled job",
        ),
        (
            &format!("/market/verifiers/{}", key("nobody").address()),
            404,
            "is not a registered verifier",
        ),
        ("/assets/nothing.js", 404, "no asset"),
    ] {
        let (code, kind, body) = get(&t, path);
        assert_eq!(code, status, "{path}: {body}");
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
        assert!(body.contains("role=\"alert\""), "{path}: {body}");
        assert!(body.contains(says), "{path}: {body}");
    }
    // The assets are served, and cached.
    let (code, kind, js) = get(&t, "/assets/app.js");
    assert_eq!(code, 200);
    assert!(kind.starts_with("text/javascript") && js.contains("function blake3"));
}

#[test]
fn only_a_devnet_sends_from_its_demo_wallet_and_only_as_json() {
    // A node without a demo wallet has nothing to send from.
    let t = start();
    let r = agent()
        .post(&format!("{}/devnet/transfer", t.base))
        .send_json(serde_json::json!({ "to": key("bob").address().to_string(), "amount": "1" }))
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(
        !page(&t, "/").contains("data-demo-form"),
        "no form without a demo wallet"
    );

    // A devnet's: Alice's key plays the demo wallet.
    let genesis = Genesis::new(CHAIN).with_accounts(vec![GenesisAccount {
        address: key("alice").address(),
        balance: 50 * AGR,
        bonded: 0,
    }]);
    let t = TestNode::start_with_pages(&genesis, "web-test-validator", |node| {
        agora_web::router_with(
            node,
            agora_web::Links {
                demo: Some(std::sync::Arc::new(agora_web::DemoWallet::new(key(
                    "alice",
                )))),
                ..agora_web::Links::default()
            },
        )
    });
    assert!(page(&t, "/").contains("data-demo-form"));
    let send = |to: &str, amount: &str| {
        let mut r = agent()
            .post(&format!("{}/devnet/transfer", t.base))
            .send_json(serde_json::json!({ "to": to, "amount": amount }))
            .unwrap();
        let body: serde_json::Value = r.body_mut().read_json().unwrap();
        (r.status().as_u16(), body)
    };
    let bob = key("bob").address().to_string();
    // Two in a row before a block: the second takes the next nonce.
    assert_eq!(send(&bob, "1.5").0, 202);
    assert_eq!(send(&bob, "0.5").0, 202);
    t.block();
    let snap = t.node.snapshot().unwrap();
    let balance =
        agora_state::StateRead::get(&snap, &agora_state::account_key(&key("bob").address()))
            .unwrap()
            .map(|b| {
                borsh::from_slice::<agora_state::Account>(&b)
                    .unwrap()
                    .balance
            });
    assert_eq!(balance, Some(2 * AGR));
    // Bad input is refused with a reason; a form post (not JSON) is refused outright.
    assert_eq!(send("nobody", "1").1["code"], "invalid_address");
    assert_eq!(send(&bob, "0").1["code"], "invalid_amount");
    assert_eq!(send(&bob, "lots").1["code"], "invalid_amount");
    // A page whose site name points here (DNS rebinding) is not this machine's.
    let mut r = agent()
        .post(&format!("{}/devnet/transfer", t.base))
        .header("host", "evil.example")
        .send_json(serde_json::json!({ "to": bob, "amount": "1" }))
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let body: serde_json::Value = r.body_mut().read_json().unwrap();
    assert_eq!(body["code"], "not_local");
    let r = agent()
        .post(&format!("{}/devnet/transfer", t.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .send(format!("to={bob}&amount=1"))
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        415,
        "cross-site forms cannot send JSON"
    );
}

#[test]
fn subnet_pages_list_subnets_and_show_a_metagraph_with_its_history() {
    use agora_types::{SubnetParam, SubnetTask, weights_commitment};
    let genesis =
        Genesis::new(CHAIN).with_accounts(["owner", "val", "miner"].map(|w| GenesisAccount {
            address: key(w).address(),
            balance: 1_000 * AGR,
            bonded: 0,
        }));
    let t = TestNode::start_with_pages(&genesis, "web-test-validator", agora_web::router);
    let empty = page(&t, "/subnets");
    assert!(empty.contains("No subnet yet"), "{empty}");
    let nonces = std::cell::RefCell::new(std::collections::BTreeMap::<&str, u64>::new());
    let send = |who: &'static str, messages: Vec<Message>| {
        let nonce = *nonces.borrow().get(who).unwrap_or(&0);
        nonces.borrow_mut().insert(who, nonce + 1);
        let tx = Transaction {
            chain_id: CHAIN.into(),
            sender: key(who).public(),
            nonce,
            fee: 1_000_000,
            messages,
        };
        submit(&t, tx, who);
    };
    send(
        "owner",
        vec![
            Message::CreateSubnet {
                name: "chat-arena".into(),
                task: SubnetTask::Chat,
                max_lock: 100 * AGR,
            },
            Message::SetSubnetParam {
                netuid: 0,
                param: SubnetParam::Tempo(10),
            },
        ],
    );
    t.block();
    for w in ["val", "miner"] {
        send(
            w,
            vec![Message::RegisterNeuron {
                netuid: 0,
                endpoint: "http://127.0.0.1:9".into(),
                max_burn: AGR,
            }],
        );
    }
    t.block();
    let salt = Hash([3; 32]);
    send(
        "val",
        vec![
            Message::AddSubnetStake {
                netuid: 0,
                hotkey: key("val").address(),
                amount: 100 * AGR,
            },
            Message::CommitWeights {
                netuid: 0,
                commitment: weights_commitment(0, &key("val").address(), &[1], &[1], &salt),
            },
        ],
    );
    // The first epoch is at the end of block 1 + 10; the reveal goes in the block after.
    for _ in 0..9 {
        t.block();
    }
    send(
        "val",
        vec![Message::RevealWeights {
            netuid: 0,
            uids: vec![1],
            weights: vec![1],
            salt,
        }],
    );
    for _ in 0..10 {
        t.block();
    }
    let list = page(&t, "/subnets");
    assert!(
        list.contains("chat-arena") && list.contains("href=\"/subnets/0\""),
        "{list}"
    );
    assert!(list.contains("<svg class=\"chart\""), "the stake chart");
    let one = page(&t, "/subnets/0");
    assert!(one.contains("Subnet 0: chat-arena"), "{one}");
    assert!(one.contains("data-metagraph"), "{one}");
    // The miner (UID 1) holds all the incentive, the validator its permit.
    assert!(one.contains("<td data-incentive>1.0</td>"), "{one}");
    assert!(one.contains(">permit<"), "{one}");
    assert!(one.contains("Emission paid per epoch"), "{one}");
    assert!(one.contains("Incentive of UID 1 over epochs"), "{one}");
    let (status, _, body) = get(&t, "/subnets/7");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no subnet 7"), "{body}");
    let (status, _, _) = get(&t, "/subnets/x");
    assert_eq!(status, 404);
}

#[test]
fn the_sql_page_offers_an_editor_with_examples() {
    let t = start();
    let body = page(&t, "/sql");
    assert!(body.contains("data-sql-query"), "{body}");
    assert!(
        body.contains("FROM transactions"),
        "an example query: {body}"
    );
    assert!(
        unescape(&body).contains("href=\"/sql\""),
        "in the navigation"
    );
}

#[test]
fn words_and_unknown_hashes_go_to_the_search_page() {
    let t = start();
    // An identifier the chain knows still goes straight to its page.
    let (status, _, _) = get(&t, &format!("/search?q={}", key("alice").address()));
    assert_eq!(status, 303, "a redirect to the account's page");
    for path in [
        "/search".to_string(),
        "/search?q=what%3F%20%3Cscript%3E".to_string(),
        format!("/search?q={}", Hash([5; 32])),
    ] {
        let body = page(&t, &path);
        assert!(body.contains("data-search-form"), "{path}: {body}");
        assert!(body.contains("data-feed-form"), "{path}: {body}");
        assert!(!body.contains("<script>"), "{path}: the query is escaped");
    }
    let body = page(&t, "/search?q=staking%20rewards");
    assert!(body.contains("value=\"staking rewards\""), "{body}");
    assert!(
        unescape(&body).contains("href=\"/search\""),
        "in the navigation"
    );
}

#[test]
fn data_pages_show_bounties_their_items_and_the_dataset() {
    use agora_state::{DataParams, Stage};
    use agora_types::{BountySpec, RejectReason, ScreenVerdict, vote_commitment};
    let users = ["requester", "alice", "r1", "r2", "r3"];
    let genesis = Genesis::new(CHAIN)
        .with_accounts(users.map(|w| GenesisAccount {
            address: key(w).address(),
            balance: 1_000 * AGR,
            bonded: 0,
        }))
        .with_data(DataParams {
            screen_window: 3,
            appeal_window: 3,
            commit_window: 3,
            reveal_window: 3,
            ..DataParams::default()
        });
    let t = TestNode::start_with_pages(&genesis, "web-test-validator", agora_web::router);
    let empty = page(&t, "/data");
    assert!(empty.contains("No bounty yet"), "{empty}");
    let nonces = std::cell::RefCell::new(std::collections::BTreeMap::<&str, u64>::new());
    let send = |who: &'static str, messages: Vec<Message>| {
        let nonce = *nonces.borrow().get(who).unwrap_or(&0);
        nonces.borrow_mut().insert(who, nonce + 1);
        let tx = Transaction {
            chain_id: CHAIN.into(),
            sender: key(who).public(),
            nonce,
            fee: 1_000_000,
            messages,
        };
        submit(&t, tx, who);
        t.block();
    };
    for r in ["r1", "r2", "r3"] {
        send(r, vec![Message::JoinReviewers { amount: 50 * AGR }]);
    }
    send(
        "requester",
        vec![Message::CreateBounty {
            spec: BountySpec {
                description: "Solidity <terms> explained".into(),
                schema: r#"{"type":"object"}"#.into(),
                reward_per_item: AGR,
                review_fee: AGR / 100,
                budget: 10 * AGR,
                quorum: 1,
                review_stake: 10 * AGR,
                item_bond: AGR / 10,
                deadline: 20,
                max_item_bytes: 1024,
                duplicate_bps: 9_400,
                royalty_bps: 250,
            },
        }],
    );
    for i in 0..2u8 {
        send(
            "alice",
            vec![Message::SubmitItem {
                bounty: 0,
                hash: Hash([i; 32]),
                size: 10,
            }],
        );
    }
    t.block();
    let snap = || t.node.snapshot().unwrap();
    let item = |i: u32| -> agora_state::Item {
        borsh::from_slice(
            &agora_state::StateRead::get(&snap(), &agora_state::item_key(0, i))
                .unwrap()
                .unwrap(),
        )
        .unwrap()
    };
    let who = |a: &agora_types::Address| -> &'static str {
        ["r1", "r2", "r3"]
            .into_iter()
            .find(|w| key(w).address() == *a)
            .unwrap()
    };
    for i in 0..2u32 {
        let Stage::Screening { screener, .. } = item(i).stage else {
            panic!("not screening");
        };
        let verdict = if i == 0 {
            ScreenVerdict::Pass
        } else {
            ScreenVerdict::Reject {
                reason: RejectReason::Spam,
                duplicate_of: None,
                detail: "filler words".into(),
            }
        };
        send(
            who(&screener),
            vec![Message::ScreenItem {
                bounty: 0,
                item: i,
                verdict,
            }],
        );
    }
    let mid = page(&t, "/data/bounties/0");
    assert!(mid.contains("Solidity &lt;terms&gt; explained"), "{mid}");
    assert!(mid.contains("spam: filler words"), "{mid}");
    let Stage::Voting {
        seats,
        commit_deadline,
        ..
    } = item(0).stage
    else {
        panic!("not voting");
    };
    let voter = who(&seats[0].reviewer);
    let salt = Hash([3; 32]);
    send(
        voter,
        vec![Message::CommitVote {
            bounty: 0,
            item: 0,
            commitment: vote_commitment(0, 0, &key(voter).address(), true, &salt),
        }],
    );
    let voting = page(&t, "/data/bounties/0");
    assert!(voting.contains("voting: commits until block"), "{voting}");
    while snap().height().unwrap().unwrap() < commit_deadline {
        t.block();
    }
    send(
        voter,
        vec![Message::RevealVote {
            bounty: 0,
            item: 0,
            accept: true,
            salt,
        }],
    );
    let b: agora_state::Bounty = borsh::from_slice(
        &agora_state::StateRead::get(&snap(), &agora_state::bounty_key(0))
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    while snap().height().unwrap().unwrap() < b.settle_at {
        t.block();
    }
    let list = page(&t, "/data");
    assert!(list.contains("href=\"/data/bounties/0\""), "{list}");
    assert!(list.contains("settled"), "{list}");
    let settled = page(&t, "/data/bounties/0");
    assert!(settled.contains("accepted"), "{settled}");
    let root = settled
        .split("/data/datasets/")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let ds = page(&t, &format!("/data/datasets/{root}"));
    assert!(ds.contains(&key("alice").address().to_string()), "{ds}");
    assert!(ds.contains("2.5 %"), "{ds}");
    for bad in ["/data/bounties/7", "/data/bounties/x", "/data/datasets/00"] {
        assert_eq!(get(&t, bad).0, 404, "{bad}");
    }
}

#[test]
fn the_proofs_page_lists_provable_models_and_an_account_s_attestations() {
    use agora_types::{ZkClaim, commitment_hash};
    let t = start();
    let empty = page(&t, "/zk");
    assert!(empty.contains("No provable model is registered"), "{empty}");
    let model = agora_zk::ZkModel::synthetic("web-risk", &[5, 3, 1], 4).unwrap();
    let file = model.to_bytes();
    let pk = agora_zk::ProvingKey::new(model).unwrap();
    let id = Hash(pk.verifying_key().model_id());
    let alice = key("alice").address();
    let send = |nonce: u64, messages: Vec<Message>| {
        let tx = Transaction {
            chain_id: CHAIN.into(),
            sender: key("alice").public(),
            nonce,
            fee: 1_000_000,
            messages,
        };
        submit(&t, tx, "alice");
        t.block();
    };
    send(
        0,
        vec![Message::RegisterZkModel {
            name: "web-risk".into(),
            model: file,
        }],
    );
    // Alice proves, without showing it, that her score is below 1,000.
    let context = agora_state::zk_attest_context(CHAIN, &alice, 0);
    let (st, proof) = pk
        .prove(&[1, -2, 3, 4, 5], &[3; 8], 1_000, true, &context)
        .unwrap();
    let claim = ZkClaim {
        model: id,
        input_commitment: commitment_hash(&st.input_commitment),
        threshold: st.t,
        below: st.below,
        outputs: None,
    };
    send(
        1,
        vec![Message::ZkAttest {
            claim,
            certifier: None,
            proof,
        }],
    );
    let list = page(&t, "/zk");
    assert!(
        list.contains("web-risk") && list.contains(&id.to_string()),
        "{list}"
    );
    assert!(list.contains("5→3, 3→1"), "the layers: {list}");
    let mine = page(&t, &format!("/zk?address={alice}"));
    assert!(mine.contains("data-zk-attestations"), "{mine}");
    let below = if st.below { "&lt; 1000" } else { "≥ 1000" };
    assert!(mine.contains(below), "{mine}");
    assert!(mine.contains("uncertified"), "{mine}");
    assert!(mine.contains("private"), "the outputs stay private: {mine}");
    assert!(mine.contains("data-next-seq>1<"), "{mine}");
    assert!(
        mine.contains("data-zk-jobs") && mine.contains("/v1/zk/infer"),
        "{mine}"
    );
    assert!(
        unescape(&page(&t, "/")).contains("href=\"/zk\""),
        "in the navigation"
    );
    let (status, _, body) = get(&t, "/zk?address=nonsense");
    assert_eq!(status, 404, "{body}");

    // A proved job: Alice serves the model, Bob asks for a run on his private input; the page of
    // the settled job shows what the chain verified.
    let bob = key("bob");
    send(
        2,
        vec![
            Message::Transfer {
                to: bob.address(),
                amount: 10 * AGR,
            },
            Message::RegisterProvider {
                stake: 100 * AGR,
                info: ProviderInfo {
                    models: vec![id],
                    price_input_per_1k: 1_000,
                    price_output_per_1k: 3_000,
                    endpoint: "http://127.0.0.1:1".into(),
                    encryption_key: EncryptionKey([1; 32]),
                },
            },
        ],
    );
    let tx = Transaction {
        chain_id: CHAIN.into(),
        sender: bob.public(),
        nonce: 0,
        fee: 1_000_000,
        messages: vec![Message::EscrowDeposit { amount: 5 * AGR }],
    };
    submit(&t, tx, "bob");
    t.block();
    let (input, salt) = ([9i8, 8, 7, 6, 5], [11u32; 8]);
    let request = agora_types::JobRequest {
        chain_id: CHAIN.into(),
        client: bob.public(),
        provider: alice,
        model: id,
        input_hash: commitment_hash(&agora_zk::input_commitment(&input, &salt)),
        params: agora_types::JobParams {
            max_tokens: 1,
            verification: agora_types::Verification::Zk,
            ..agora_types::JobParams::default()
        },
        max_fee: AGR,
        nonce: Hash([5; 32]),
        expiry_height: 1_000,
    };
    let job_id = request.id();
    let context = agora_state::zk_job_context(CHAIN, &job_id);
    let (st, proof) = pk.prove(&input, &salt, 1 << 27, false, &context).unwrap();
    let claim = ZkClaim {
        model: id,
        input_commitment: commitment_hash(&st.input_commitment),
        threshold: st.t,
        below: st.below,
        outputs: st.outputs.clone(),
    };
    let receipt = agora_types::JobReceipt {
        request_hash: request.hash(),
        output_hash: claim.output_hash(&proof),
        input_tokens: 5,
        output_tokens: 1,
        fee: agora_types::job_fee(1_000, 3_000, 5, 1).unwrap()
            + agora_types::zk_proof_fee(agora_state::Params::default().min_fee),
    }
    .sign(&key("alice"));
    send(
        3,
        vec![Message::SettleZkJob {
            job: agora_types::SettledJob {
                request: request.sign(&bob),
                receipt,
            },
            claim,
            proof,
        }],
    );
    let job = page(&t, &format!("/market/jobs/{job_id}"));
    assert!(job.contains("data-zk-proof"), "{job}");
    let outputs = st.outputs.unwrap();
    assert!(
        job.contains(&format!("data-zk-outputs>{}<", outputs[0])),
        "{job}"
    );
    assert!(job.contains("the chain verified its proof"), "{job}");
}
