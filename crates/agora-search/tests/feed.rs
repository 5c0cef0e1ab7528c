//! Feeds over a real node's chain and the search routes over HTTP on 127.0.0.1: a feed is
//! built from the account's activity and its signed follows, says why each item is there,
//! never shows the account's own doings, and prefers new and varied items; the routes refuse
//! bad input with their own codes.

#![allow(clippy::unwrap_used)]

use agora_api::testing::TestNode;
use agora_search::chain::ChainIndexer;
use agora_search::feed::{self, Prefs, PrefsUpdate};
use agora_search::http::SearchService;
use agora_search::{Doc, HashEmbed, Kind, SearchIndex};
use agora_state::{Genesis, GenesisAccount};
use agora_types::{AGR, Keypair, Message, Transaction};
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
    let dir = tempfile::tempdir().unwrap();
    let index = Arc::new(SearchIndex::open(dir.path(), Arc::new(HashEmbed::new(64))).unwrap());
    let mut follower = None;
    let t = TestNode::start_with_pages(&genesis(), "feed-validator", |node| {
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
