//! Feeds over a real node's chain and the search routes over HTTP on 127.0.0.1: a feed is
//! built from the account's activity and its signed follows, says why each item is there,
//! never shows the account's own doings, and prefers new and varied items; the routes refuse
//! bad input with their own codes.

#![allow(clippy::unwrap_used)]

use agora_api::testing::TestNode;
use agora_search::chain::ChainIndexer;
use agora_search::feed::{self, Prefs, PrefsUpdate};
use agora_search::http::SearchService;
use agora_search::reports::PublishReport;
use agora_search::{Doc, HashEmbed, Kind, SearchIndex};
use agora_state::{Genesis, GenesisAccount, GenesisModel, MarketParams};
use agora_types::{
    AGR, EncryptionKey, Hash, JobParams, JobReceipt, JobRequest, Keypair, Message, ModelKind,
    ProviderInfo, SettledJob, Transaction, job_fee,
};
use std::sync::Arc;
use std::time::Duration;

const CHAIN: &str = "feed-chain";
const DAY: i64 = 86_400_000;

fn key(name: &str) -> Keypair {
    Keypair::from_seed_label(name)
}

fn genesis() -> Genesis {
    Genesis::new(CHAIN).with_accounts(["alice", "carol"].map(|n| GenesisAccount {
        address: key(n).address(),
        balance: 1_000 * AGR,
        bonded: 0,
    }))
}

struct Net {
    t: TestNode,
    index: Arc<SearchIndex>,
    follower: Arc<ChainIndexer>,
    _dir: tempfile::TempDir,
}

fn start() -> Net {
    start_with(&genesis())
}

fn start_with(genesis: &Genesis) -> Net {
    let dir = tempfile::tempdir().unwrap();
    let index = Arc::new(SearchIndex::open(dir.path(), Arc::new(HashEmbed::new(64))).unwrap());
    let mut follower = None;
    let t = TestNode::start_with_pages(genesis, "feed-validator", |node| {
        let f = Arc::new(ChainIndexer::start(node.clone(), index.clone()).unwrap());
        follower = Some(f.clone());
        agora_search::http::router(SearchService::new(index.clone(), node, Some(f)))
    });
    Net {
        t,
        index,
        follower: follower.unwrap(),
        _dir: dir,
    }
}

impl Net {
    fn send(&self, who: &str, nonce: u64, messages: Vec<Message>) {
        let tx = Transaction {
            chain_id: CHAIN.into(),
            sender: key(who).public(),
            nonce,
            fee: 1_000_000,
            messages,
        }
        .sign(&key(who));
        self.t.node.submit(&tx.encode()).unwrap();
    }

    fn block(&self) {
        self.t.block();
        let h = self.t.node.snapshot().unwrap().height().unwrap().unwrap();
        assert!(
            self.t
                .rt
                .block_on(self.follower.wait_for(h, Duration::from_secs(20)))
        );
    }

    fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = agent.get(&format!("{}{path}", self.t.base)).call().unwrap();
        (r.status().as_u16(), r.body_mut().read_json().unwrap())
    }

    fn post(&self, path: &str, body: &impl serde::Serialize) -> (u16, serde_json::Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = agent
            .post(&format!("{}{path}", self.t.base))
            .send_json(body)
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_json().unwrap())
    }
}

fn article(id: &str, title: &str, body: &str, time_ms: i64) -> Doc {
    Doc {
        time_ms,
        url: Some(format!("https://example.org/{id}")),
        ..Doc::new(format!("article:{id}"), Kind::Article, title, body)
    }
}

#[test]
fn search_routes_answer_and_refuse_bad_input() {
    let n = start();
    let bob = key("bob").address();
    n.send(
        "alice",
        0,
        vec![Message::Transfer {
            to: bob,
            amount: 7 * AGR,
        }],
    );
    n.block();
    let (status, v) = n.get(&format!("/v1/search?q={bob}"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["hits"][0]["id"], format!("account:{bob}"));
    assert_eq!(v["hits"][0]["exact"], true);
    let (_, v) = n.get("/v1/search?q=transfer&kind=tx&limit=5");
    assert!(
        v["hits"][0]["title"]
            .as_str()
            .unwrap()
            .contains("Transfer of 7 AGR"),
        "{v}"
    );
    // A block's hash goes to the block.
    let hash =
        n.t.node
            .snapshot()
            .unwrap()
            .latest_block()
            .unwrap()
            .unwrap()
            .hash();
    let (_, v) = n.get(&format!("/v1/search?q={hash}"));
    assert_eq!(v["hits"][0]["url"], "/blocks/1", "{v}");

    for (path, code) in [
        ("/v1/search?q=", "empty_query"),
        ("/v1/search?q=%20%20", "empty_query"),
        ("/v1/search?q=x&kind=bogus", "unknown_filter"),
        ("/v1/search?q=x&mode=psychic", "unknown_filter"),
        ("/v1/search?q=x&colour=red", "malformed_request"),
        ("/v1/search?q=x&subnet=-1", "malformed_request"),
        ("/v1/feed/nobody", "bad_prefs"),
        ("/v1/feed/nobody/prefs", "bad_prefs"),
    ] {
        let (status, v) = n.get(path);
        assert_eq!(status, 400, "{path}: {v}");
        assert_eq!(v["code"], code, "{path}: {v}");
    }
    let long = "word ".repeat(300);
    let (status, v) = n.get(&format!("/v1/search?q={}", long.replace(' ', "%20")));
    assert_eq!((status, v["code"].as_str()), (400, Some("query_too_long")));
    let (status, v) = n.get("/v1/search/stats");
    assert_eq!(status, 200);
    assert!(v["stats"]["docs"].as_u64().unwrap() >= 4, "{v}");
}

#[test]
fn a_feed_follows_activity_and_signed_preferences() {
    let n = start();
    let alice = key("alice").address();
    let carol = key("carol").address();
    let dave = key("dave").address();
    // Alice deals with dave; carol does her own things.
    n.send(
        "alice",
        0,
        vec![Message::Transfer {
            to: dave,
            amount: 3 * AGR,
        }],
    );
    n.send("carol", 0, vec![Message::Bond { amount: 10 * AGR }]);
    n.block();
    n.send(
        "alice",
        1,
        vec![Message::Transfer {
            to: dave,
            amount: 2 * AGR,
        }],
    );
    n.block();
    let now =
        n.t.node
            .snapshot()
            .unwrap()
            .latest_block()
            .unwrap()
            .unwrap()
            .header
            .time_ms as i64;
    // Articles: two near-identical ones of one source, an old one, and other sources.
    n.index
        .upsert(vec![
            article(
                "oracle/a",
                "Oracle prices for forecasting",
                "forecast oracle prices feed",
                now,
            ),
            article(
                "oracle/b",
                "Oracle prices for forecasting again",
                "forecast oracle prices feed",
                now - 1,
            ),
            article(
                "oracle/c",
                "Oracle prices, a third take",
                "forecast oracle prices market",
                now - 2,
            ),
            article(
                "zk/a",
                "Zero-knowledge inference",
                "zk proofs of model inference",
                now,
            ),
        ])
        .unwrap();

    // From activity alone: dave (a counterparty) and nothing of alice's own.
    let f = feed::feed(&n.index, &alice.to_string(), now, 20).unwrap();
    assert!(f.activity >= 3, "{f:?}");
    assert!(!f.items.is_empty());
    let mine: Vec<String> = n
        .index
        .recent(
            &agora_search::Filters {
                address: Some(alice.to_string()),
                ..agora_search::Filters::default()
            },
            100,
        )
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert!(mine.len() >= 3, "{mine:?}");
    for item in &f.items {
        assert!(!item.reasons.is_empty(), "{item:?}");
        assert!(!mine.contains(&item.id), "its own doings: {item:?}");
    }
    assert!(
        f.items.iter().any(|i| i.id == format!("account:{dave}")
            && i.reasons.iter().any(|r| r.contains("appears in"))),
        "{f:#?}"
    );
    assert!(f.following.iter().any(|s| s.contains(&dave.to_string())));

    // Preferences: signed by alice's key only, never replayed.
    let prefs = Prefs {
        accounts: vec![carol.to_string()],
        topics: vec![
            "zero-knowledge inference".into(),
            "oracle prices forecasting".into(),
        ],
        ..Prefs::default()
    };
    let update = PrefsUpdate::sign(CHAIN, &key("alice"), 1, prefs.clone());
    let path = format!("/v1/feed/{alice}/prefs");
    let forged = PrefsUpdate {
        public_key: key("mallory").public(),
        ..update.clone()
    };
    assert_eq!(n.post(&path, &forged).1["code"], "bad_prefs");
    let mut tampered = update.clone();
    tampered.prefs.topics.push("spam".into());
    assert_eq!(n.post(&path, &tampered).1["code"], "bad_prefs");
    let other_chain = PrefsUpdate::sign("another", &key("alice"), 1, prefs.clone());
    assert_eq!(n.post(&path, &other_chain).1["code"], "bad_prefs");
    // An account the chain does not know keeps nothing.
    let stranger = PrefsUpdate::sign(CHAIN, &key("stranger"), 1, prefs.clone());
    let (status, v) = n.post(
        &format!("/v1/feed/{}/prefs", key("stranger").address()),
        &stranger,
    );
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("unknown_account")),
        "{v}"
    );
    let (status, v) = n.post(&path, &update);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["nonce"], 1);
    let (status, v) = n.post(&path, &update);
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("bad_prefs")),
        "a replay: {v}"
    );
    let too_many = Prefs {
        topics: (0..40).map(|i| format!("t{i}")).collect(),
        ..Prefs::default()
    };
    let (status, _) = n.post(&path, &PrefsUpdate::sign(CHAIN, &key("alice"), 2, too_many));
    assert_eq!(status, 400);

    let (status, v) = n.get(&format!("/v1/feed/{alice}?limit=10"));
    assert_eq!(status, 200, "{v}");
    let items = v["items"].as_array().unwrap();
    let reasons = |id: &str| -> Vec<String> {
        items
            .iter()
            .find(|i| i["id"] == id)
            .map(|i| serde_json::from_value(i["reasons"].clone()).unwrap())
            .unwrap_or_default()
    };
    assert!(
        reasons(&format!("account:{carol}"))
            .iter()
            .any(|r| r.contains("whom you follow")),
        "{v:#}"
    );
    assert!(
        reasons("article:zk/a")
            .iter()
            .any(|r| r.contains("your topic")),
        "{v:#}"
    );
    // Diversity: of one source's articles, the near duplicate of the first goes below the
    // third, though its words match better.
    let pos = |id: &str| {
        items
            .iter()
            .position(|i| i["id"] == id)
            .unwrap_or(usize::MAX)
    };
    assert!(pos("article:oracle/a") < pos("article:oracle/c"), "{v:#}");
    assert!(pos("article:oracle/c") < pos("article:oracle/b"), "{v:#}");
    assert!(
        !reasons("article:oracle/a")
            .iter()
            .any(|r| r.contains("zero-knowledge")),
        "a topic's reason only where its words match: {v:#}"
    );
    // Recency: of two equal articles, the new one first (measured from the chain's time).
    let later = 61 * DAY;
    n.index
        .upsert(vec![
            article(
                "zk/a",
                "Zero-knowledge inference",
                "zk proofs of model inference",
                later,
            ),
            article(
                "zk/old",
                "Zero-knowledge inference, old notes",
                "zk proofs of model inference",
                DAY,
            ),
        ])
        .unwrap();
    let f = feed::feed(&n.index, &alice.to_string(), later, 20).unwrap();
    let pos = |id: &str| {
        f.items
            .iter()
            .position(|i| i.id == id)
            .unwrap_or(usize::MAX)
    };
    assert!(pos("article:zk/a") < pos("article:zk/old"), "{f:#?}");
    assert!(pos("article:zk/old") < usize::MAX, "{f:#?}");
}

const OTHER_AUDITOR: Hash = Hash([0xAD; 32]);
const CHAT: Hash = Hash([0xC4; 32]);

fn auditor() -> Hash {
    Hash(agora_audit::model_id())
}

/// A job of `model` that carol paid alice for, settled with these bytes' hashes.
fn settled(model: Hash, nonce: u8, input: &str, output: &str) -> (Hash, SettledJob) {
    let request = JobRequest {
        chain_id: CHAIN.into(),
        client: key("carol").public(),
        provider: key("alice").address(),
        model,
        input_hash: Hash::digest(input.as_bytes()),
        params: JobParams::default(),
        max_fee: 1_000,
        nonce: Hash([nonce; 32]),
        expiry_height: 50,
    };
    let receipt = JobReceipt {
        request_hash: request.hash(),
        output_hash: Hash::digest(output.as_bytes()),
        input_tokens: 10,
        output_tokens: 20,
        fee: job_fee(1_000, 3_000, 10, 20).unwrap(),
    };
    (
        request.id(),
        SettledJob {
            request: request.sign(&key("carol")),
            receipt: receipt.sign(&key("alice")),
        },
    )
}

const VAULT: &str = "pragma solidity ^0.4.24;\n\
// A vault that pays out savings.\n\
contract Vault {\n\
    mapping(address => uint) balances;\n\
    function withdraw() public {\n\
        require(msg.sender.call.value(balances[msg.sender])());\n\
        balances[msg.sender] = 0;\n\
    }\n\
}\n";

/// A job's input and the auditor's report on it, as the JSON texts a job commits to.
fn audit_texts(name: &str, source: &str) -> (String, String) {
    let input = serde_json::json!({"kind": "audit", "files": [{"name": name, "source": source}]});
    let report = agora_audit::audit_files([(name, source)]);
    let output = serde_json::json!({
        "kind": "audit", "findings": report.findings, "errors": report.errors
    });
    (input.to_string(), output.to_string())
}

#[test]
fn a_client_publishes_its_audit_report_and_only_the_settled_one() {
    let genesis = genesis()
        .with_market(MarketParams {
            min_provider_stake: 10 * AGR,
            ..MarketParams::default()
        })
        .with_models(vec![
            GenesisModel {
                id: auditor(),
                name: agora_audit::MODEL_NAME.into(),
                kind: ModelKind::Audit,
            },
            // Anyone may register a model of the auditor's kind, under a name like its own
            // (names are unique, not unlike).
            GenesisModel {
                id: OTHER_AUDITOR,
                name: format!("{} ", agora_audit::MODEL_NAME),
                kind: ModelKind::Audit,
            },
            GenesisModel {
                id: CHAT,
                name: "test-chat".into(),
                kind: ModelKind::Chat,
            },
        ]);
    let n = start_with(&genesis);
    n.send(
        "alice",
        0,
        vec![Message::RegisterProvider {
            stake: 10 * AGR,
            info: ProviderInfo {
                models: vec![auditor(), OTHER_AUDITOR, CHAT],
                price_input_per_1k: 1_000,
                price_output_per_1k: 3_000,
                endpoint: "http://127.0.0.1:1".into(),
                encryption_key: EncryptionKey([1; 32]),
            },
        }],
    );
    n.send("carol", 0, vec![Message::EscrowDeposit { amount: AGR }]);
    n.block();
    let (input, output) = audit_texts("Vault.sol", VAULT);
    assert!(output.contains("reentrancy"), "{output}");
    // What the auditor does not say, settled as if it did (provider and client agree).
    let lie = r#"{"kind":"audit","findings":[],"errors":[]}"#;
    let (audit_id, audit_job) = settled(auditor(), 1, &input, &output);
    let (lie_id, lie_job) = settled(auditor(), 2, &input, lie);
    let (other_id, other_job) = settled(OTHER_AUDITOR, 3, &input, &output);
    let (chat_id, chat_job) = settled(CHAT, 4, &input, &output);
    n.send(
        "alice",
        1,
        vec![Message::SettleJobs {
            jobs: vec![audit_job, lie_job, other_job, chat_job],
        }],
    );
    n.block();
    let (status, v) = n.get(&format!("/v1/market/jobs/{audit_id}"));
    assert_eq!(status, 200, "the job settled: {v}");

    let carol = key("carol");
    let publish = |r: &PublishReport| n.post("/v1/search/reports", r);
    let sign = |who: &Keypair, chain: &str, job: Hash, input: &str, output: &str| {
        PublishReport::sign(chain, who, job, input.into(), output.into())
    };
    let good = sign(&carol, CHAIN, audit_id, &input, &output);
    let refused = |r: PublishReport, why: &str| {
        let (status, v) = publish(&r);
        assert_eq!(status, 400, "{why}: {v}");
        assert_eq!(v["code"], "bad_report", "{why}: {v}");
        assert!(v["message"].as_str().unwrap().contains(why), "{why}: {v}");
    };
    // Settled in the last block: the chain draws its check in the next.
    refused(good.clone(), "verification is over");
    n.block();
    // The provider holds the same bytes, but not the client's key.
    refused(
        sign(&key("alice"), CHAIN, audit_id, &input, &output),
        "client",
    );
    // A key that claims to be the client's, with another's signature.
    refused(
        PublishReport {
            signature: key("alice").sign(&PublishReport::sign_bytes(CHAIN, &audit_id)),
            ..good.clone()
        },
        "signature",
    );
    refused(
        sign(&carol, "other-chain", audit_id, &input, &output),
        "signature",
    );
    // A report with a finding changed, or other sources, is not the job's.
    let altered = output.replace("high", "low");
    refused(
        sign(&carol, CHAIN, audit_id, &input, &altered),
        "report is not the job's",
    );
    let other = input.replace("Vault", "Bank");
    refused(
        sign(&carol, CHAIN, audit_id, &other, &output),
        "input is not the job's",
    );
    refused(
        sign(&carol, CHAIN, Hash([9; 32]), &input, &output),
        "not settled",
    );
    refused(
        sign(&carol, CHAIN, chat_id, &input, &output),
        "not an audit",
    );
    // Settled with its hash, but not what the auditor finds.
    refused(
        sign(&carol, CHAIN, lie_id, &input, lie),
        "not what the auditor finds",
    );
    // A model of the auditor's kind and name, but not this node's auditor.
    refused(
        sign(&carol, CHAIN, other_id, &input, &output),
        "cannot be checked here",
    );
    let (status, v) = n.post(
        "/v1/search/reports",
        &serde_json::json!({"job_id": audit_id}),
    );
    assert_eq!(
        (status, v["code"].as_str()),
        (422, Some("bad_report")),
        "{v}"
    );
    assert!(
        n.index.ids_with_prefix("audit:", 10).unwrap().is_empty(),
        "nothing refused was indexed"
    );

    // The client's own publication is indexed, by its flaw and by what the contract does.
    let (status, v) = publish(&good);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["id"], format!("audit:{audit_id}"));
    let (_, v) = n.get("/v1/search?q=reentrancy&kind=audit");
    assert_eq!(v["hits"][0]["id"], format!("audit:{audit_id}"), "{v}");
    let title = v["hits"][0]["title"].as_str().unwrap();
    assert!(title.starts_with("Audit of Vault.sol: "), "{title}");
    assert!(title.contains("high"), "{title}");
    assert_eq!(v["hits"][0]["url"], format!("/market/jobs/{audit_id}"));
    let (_, v) = n.get(&format!(
        "/v1/search?q=vault%20savings&address={}",
        carol.address()
    ));
    assert_eq!(v["hits"][0]["id"], format!("audit:{audit_id}"), "{v}");
    // Publishing again changes nothing.
    let docs = n.index.len().unwrap();
    assert_eq!(publish(&good).0, 200);
    assert_eq!(n.index.len().unwrap(), docs);
}

#[test]
fn a_full_node_keeps_the_preferences_it_has_and_refuses_new_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(dir.path(), Arc::new(HashEmbed::new(64))).unwrap();
    let prefs = Prefs {
        topics: vec!["oracles".into()],
        ..Prefs::default()
    };
    let alice = key("alice");
    feed::set_prefs(
        &index,
        CHAIN,
        &PrefsUpdate::sign(CHAIN, &alice, 1, prefs.clone()),
    )
    .unwrap();
    // Other marks do not count; accounts up to the limit do.
    let filler = (0..1_000)
        .map(|i| (format!("filler/{i:06}"), vec![1]))
        .collect();
    index
        .apply(agora_search::Batch {
            marks: filler,
            ..agora_search::Batch::default()
        })
        .unwrap();
    let carol = PrefsUpdate::sign(CHAIN, &key("carol"), 1, prefs.clone());
    feed::set_prefs(&index, CHAIN, &carol).unwrap();
    assert_eq!(
        index.mark(feed::PREFS_COUNT_MARK).unwrap(),
        Some(2u64.to_le_bytes().to_vec())
    );
    // As if as many accounts as a node keeps had come before.
    index
        .apply(agora_search::Batch {
            marks: vec![(
                feed::PREFS_COUNT_MARK.into(),
                (feed::MAX_PREFS_ACCOUNTS as u64).to_le_bytes().to_vec(),
            )],
            ..agora_search::Batch::default()
        })
        .unwrap();
    let err = feed::set_prefs(
        &index,
        CHAIN,
        &PrefsUpdate::sign(CHAIN, &key("bob"), 1, prefs.clone()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("at most"), "{err}");
    // An account it keeps still updates its own.
    feed::set_prefs(&index, CHAIN, &PrefsUpdate::sign(CHAIN, &alice, 2, prefs)).unwrap();
    assert_eq!(
        feed::prefs(&index, &alice.address().to_string()).unwrap().1,
        2
    );
}

/// Embeds like `HashEmbed`, but a text containing "slow" waits until the test opens the gate.
#[derive(Debug)]
struct Gated {
    inner: HashEmbed,
    entered: std::sync::mpsc::SyncSender<()>,
    gate: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl agora_search::Embed for Gated {
    fn model(&self) -> String {
        self.inner.model()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, agora_search::Error> {
        if texts.iter().any(|t| t.contains("slow")) {
            self.entered.send(()).unwrap();
            self.gate.lock().unwrap().recv().unwrap();
        }
        self.inner.embed(texts)
    }
}

#[test]
fn a_preferences_update_does_not_wait_behind_a_batch_being_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let (entered, in_model) = std::sync::mpsc::sync_channel(1);
    let (open, gate) = std::sync::mpsc::channel();
    let index = Arc::new(
        SearchIndex::open(
            dir.path(),
            Arc::new(Gated {
                inner: HashEmbed::new(64),
                entered,
                gate: std::sync::Mutex::new(gate),
            }),
        )
        .unwrap(),
    );
    let writer = {
        let index = index.clone();
        std::thread::spawn(move || {
            index
                .upsert(vec![article("slow", "A slow batch", "slow text", 1)])
                .unwrap()
        })
    };
    in_model.recv().unwrap();
    // The batch is in the model: an update of preferences goes through meanwhile.
    let (done, finished) = std::sync::mpsc::channel();
    {
        let index = index.clone();
        std::thread::spawn(move || {
            let update = PrefsUpdate::sign(CHAIN, &key("alice"), 1, Prefs::default());
            done.send(feed::set_prefs(&index, CHAIN, &update).is_ok())
                .unwrap();
        });
    }
    let answered = finished.recv_timeout(Duration::from_secs(20));
    open.send(()).unwrap();
    assert_eq!(answered, Ok(true), "the update waited for the model");
    assert_eq!(writer.join().unwrap(), 1);
    assert_eq!(index.len().unwrap(), 1);
}
