//! The data market on a real node over HTTP on 127.0.0.1: items' bytes are taken only for items
//! on chain and only when they match; a bounty runs to its dataset, whose items and proofs the
//! API serves and anyone can check; a settled bounty's rejected items leave the blob store.

#![allow(clippy::unwrap_used)]

use agora_api::testing::TestNode;
use agora_data::http::{DataService, router};
use agora_data::views::{BountyResponse, DatasetItems, DatasetResponse, ReviewerResponse};
use agora_data::{BlobStore, Limits};
use agora_state::{DataParams, Genesis, GenesisAccount, Params, Stage};
use agora_types::{
    AGR, BountySpec, Hash, Keypair, Message, ScreenVerdict, Transaction, dataset_leaf,
    vote_commitment,
};
use std::sync::Arc;

const CHAIN: &str = "data-http";
const WINDOW: u64 = 3;

fn key(i: usize) -> Keypair {
    Keypair::from_seed_label(&format!("data-user{i}"))
}

struct Net {
    tn: TestNode,
    data: DataService,
    nonces: Vec<u64>,
}

impl Net {
    fn start() -> Net {
        Self::start_with_peers(Vec::new())
    }

    /// A node whose data routes ask `peers` for bytes it lacks.
    fn start_with_peers(peers: Vec<String>) -> Net {
        let genesis = Genesis::new(CHAIN)
            .with_params(Params {
                min_fee: 10,
                unbonding_period: 3,
            })
            .with_accounts((0..6).map(|i| GenesisAccount {
                address: key(i).address(),
                balance: 1_000 * AGR,
                bonded: 0,
            }))
            .with_data(DataParams {
                screen_window: WINDOW,
                appeal_window: WINDOW,
                commit_window: WINDOW,
                reveal_window: WINDOW,
                ..DataParams::default()
            });
        let blobs_dir = tempfile::tempdir().unwrap().keep();
        let slot: Arc<std::sync::Mutex<Option<DataService>>> = Arc::default();
        let s2 = slot.clone();
        let tn = TestNode::start_with_pages(&genesis, "data-validator", move |node| {
            let blobs = Arc::new(BlobStore::open(&blobs_dir, Limits::default()).unwrap());
            let data = DataService::new(node, blobs).with_peers(peers);
            *s2.lock().unwrap() = Some(data.clone());
            router(data)
        });
        let data = slot.lock().unwrap().take().unwrap();
        Net {
            tn,
            data,
            nonces: vec![0; 6],
        }
    }

    /// One transaction of `from` in its own block; returns its events.
    fn tx(&mut self, from: usize, messages: Vec<Message>) -> Vec<agora_types::Event> {
        let fee = 10 * u128::from(agora_types::work_units(&messages));
        let signed = Transaction {
            chain_id: CHAIN.into(),
            sender: key(from).public(),
            nonce: self.nonces[from],
            fee,
            messages,
        }
        .sign(&key(from));
        self.nonces[from] += 1;
        let hash = self
            .tn
            .node
            .submit(&borsh::to_vec(&signed).unwrap())
            .unwrap();
        self.tn.block();
        let tx: agora_node_api::TxResponse = self.get(&format!("/v1/txs/{hash}"));
        let r = tx.entry.receipt.unwrap();
        assert!(r.success, "{:?}", r.failure);
        r.events
    }

    fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let mut resp = ureq::get(&format!("{}{path}", self.tn.base))
            .call()
            .unwrap();
        serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap()
    }

    /// `(status, body)` of a request.
    fn call(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("{}{path}", self.tn.base);
        let mut resp = match method {
            "PUT" => agent.put(&url).send(body).unwrap(),
            _ => agent.get(&url).call().unwrap(),
        };
        (
            resp.status().as_u16(),
            resp.body_mut().read_to_string().unwrap_or_default(),
        )
    }

    fn item_stage(&self, b: u64, i: u32) -> Stage {
        let r: BountyResponse = self.get(&format!("/v1/data/bounties/{b}"));
        r.items
            .into_iter()
            .find(|v| v.index == i)
            .map(|v| v.item.stage)
            .unwrap()
    }

    fn user_of(a: &agora_types::Address) -> usize {
        (0..6).find(|i| key(*i).address() == *a).unwrap()
    }
}

fn item(i: usize) -> Vec<u8> {
    format!("{{\"question\":\"What is item {i}?\",\"answer\":\"It is the answer {i}.\"}}")
        .into_bytes()
}

#[test]
fn a_bounty_runs_to_a_dataset_whose_proofs_anyone_checks() {
    let mut n = Net::start();
    // Users 3..=5 review.
    for r in 3..=5 {
        n.tx(r, vec![Message::JoinReviewers { amount: 50 * AGR }]);
    }
    let spec = BountySpec {
        description: "Questions and answers".into(),
        schema: r#"{"type":"object","required":["question","answer"]}"#.into(),
        reward_per_item: AGR,
        review_fee: AGR / 100,
        budget: 20 * AGR,
        quorum: 1,
        review_stake: 10 * AGR,
        item_bond: AGR / 10,
        deadline: 30,
        max_item_bytes: 1024,
        duplicate_bps: 9_400,
        royalty_bps: 100,
    };
    n.tx(0, vec![Message::CreateBounty { spec }]);
    // Bytes for an item not on chain are refused.
    let (status, body) = n.call("PUT", "/v1/data/bounties/0/items/0/content", &item(0));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("unknown_item"), "{body}");
    // Two items by user 1.
    for i in 0..2 {
        let bytes = item(i);
        n.tx(
            1,
            vec![Message::SubmitItem {
                bounty: 0,
                hash: Hash::digest(&bytes),
                size: bytes.len() as u32,
            }],
        );
    }
    // The second item's screener is drawn in the next block.
    n.tn.block();
    // Other bytes, or other sizes, are refused; the right ones are taken.
    let (status, body) = n.call("PUT", "/v1/data/bounties/0/items/0/content", &item(1));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("wrong_content"), "{body}");
    let (status, body) = n.call("PUT", "/v1/data/bounties/0/items/0/content", b"{}");
    assert!(body.contains("wrong_size"), "{status} {body}");
    for i in 0..2u32 {
        let (status, body) = n.call(
            "PUT",
            &format!("/v1/data/bounties/0/items/{i}/content"),
            &item(i as usize),
        );
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = n.call("GET", "/v1/data/bounties/0/items/1/content", b"");
    assert_eq!((status, body.into_bytes()), (200, item(1)));
    let r: BountyResponse = n.get("/v1/data/bounties/0");
    assert!(r.items.iter().all(|v| v.held));

    // Screeners see their assignments; item 0 passes, item 1 is rejected as spam.
    let mut screened = 0;
    for r in 3..=5 {
        let a: ReviewerResponse = n.get(&format!("/v1/data/reviewers/{}", key(r).address()));
        for job in a.assignments.into_iter().filter(|j| j.step == "screen") {
            let verdict = if job.index == 0 {
                ScreenVerdict::Pass
            } else {
                ScreenVerdict::Reject {
                    reason: agora_types::RejectReason::Spam,
                    duplicate_of: None,
                    detail: "test".into(),
                }
            };
            n.tx(
                r,
                vec![Message::ScreenItem {
                    bounty: 0,
                    item: job.index,
                    verdict,
                }],
            );
            screened += 1;
        }
    }
    assert_eq!(screened, 2);
    n.tn.block();
    let Stage::Voting {
        seats,
        commit_deadline,
        ..
    } = n.item_stage(0, 0)
    else {
        panic!("item 0 is not being voted on");
    };
    let voter = Net::user_of(&seats[0].reviewer);
    let salt = Hash([7; 32]);
    n.tx(
        voter,
        vec![Message::CommitVote {
            bounty: 0,
            item: 0,
            commitment: vote_commitment(0, 0, &key(voter).address(), true, &salt),
        }],
    );
    while n.tn.node.snapshot().unwrap().height().unwrap().unwrap() < commit_deadline {
        n.tn.block();
    }
    n.tx(
        voter,
        vec![Message::RevealVote {
            bounty: 0,
            item: 0,
            accept: true,
            salt,
        }],
    );
    let settle_at = {
        let r: BountyResponse = n.get("/v1/data/bounties/0");
        r.bounty.settle_at
    };
    while n.tn.node.snapshot().unwrap().height().unwrap().unwrap() < settle_at {
        n.tn.block();
    }
    let r: BountyResponse = n.get("/v1/data/bounties/0");
    assert!(r.bounty.settled);
    let root = r.bounty.dataset.expect("a dataset");
    // Only the accepted item is left on chain; its proof leads to the root.
    assert_eq!(r.items.len(), 1);
    let d: DatasetResponse = n.get(&format!("/v1/data/datasets/{root}"));
    assert_eq!(d.dataset.items, 1);
    assert_eq!(d.contributors, vec![(key(1).address(), 1)]);
    let items: DatasetItems = n.get(&format!("/v1/data/datasets/{root}/items"));
    assert_eq!(items.items.len(), 1);
    let it = &items.items[0];
    let alice = key(1).address();
    assert!(
        it.proof
            .verify(&root, &dataset_leaf(0, 0, &alice, &Hash::digest(&item(0))))
    );
    assert!(
        !it.proof
            .verify(&root, &dataset_leaf(0, 1, &alice, &Hash::digest(&item(0))))
    );
    // Attributed to another contributor, the same item is not in the dataset.
    assert!(!it.proof.verify(
        &root,
        &dataset_leaf(0, 0, &key(2).address(), &Hash::digest(&item(0)))
    ));
    // The rejected item's bytes go with its record; the accepted one's stay.
    assert_eq!(n.data.collect_garbage().unwrap(), 1);
    assert!(n.data.blobs().contains(&Hash::digest(&item(0))));
    assert!(!n.data.blobs().contains(&Hash::digest(&item(1))));
    let (status, _) = n.call("GET", "/v1/data/bounties/0/items/1/content", b"");
    assert_eq!(status, 404);
    // Bad paths get clear errors.
    let (status, body) = n.call("GET", "/v1/data/datasets/nothex", b"");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_root"), "{body}");
    let (status, body) = n.call("GET", "/v1/data/bounties/99", b"");
    assert_eq!(status, 404, "{body}");
}

/// Bytes uploaded to one node reach a reader of another: the second node fetches them from its
/// peer, checks them against the chain and keeps them; a peer is asked for its own bytes only.
#[test]
fn a_node_fetches_bytes_it_lacks_from_its_peers() {
    // Two nodes of one chain: the same genesis, block producer, transactions and times make the
    // same blocks.
    let mut a = Net::start();
    let mut b = Net::start_with_peers(vec![a.tn.base.clone()]);
    let spec = BountySpec {
        description: "Anything".into(),
        schema: r#"{"type":"object"}"#.into(),
        reward_per_item: AGR,
        review_fee: AGR / 100,
        budget: 10 * AGR,
        quorum: 1,
        review_stake: 10 * AGR,
        item_bond: AGR / 10,
        deadline: 30,
        max_item_bytes: 1024,
        duplicate_bps: 9_400,
        royalty_bps: 0,
    };
    let bytes = item(7);
    let submit = Message::SubmitItem {
        bounty: 0,
        hash: Hash::digest(&bytes),
        size: bytes.len() as u32,
    };
    for n in [&mut a, &mut b] {
        n.tx(0, vec![Message::CreateBounty { spec: spec.clone() }]);
        n.tx(1, vec![submit.clone()]);
    }
    let path = "/v1/data/bounties/0/items/0/content";
    let (status, body) = a.call("PUT", path, &bytes);
    assert_eq!(status, 201, "{body}");
    // B does not hold them; asked for its own only, it says so.
    assert_eq!(b.call("GET", &format!("{path}?local=1"), b"").0, 404);
    assert!(!b.data.blobs().contains(&Hash::digest(&bytes)));
    // Asked plainly, it fetches them from A and keeps them.
    let (status, body) = b.call("GET", path, b"");
    assert_eq!((status, body.into_bytes()), (200, bytes.clone()));
    assert!(b.data.blobs().contains(&Hash::digest(&bytes)));
    // An item no node holds: a clear 404.
    let other = item(8);
    for n in [&mut a, &mut b] {
        n.tx(
            1,
            vec![Message::SubmitItem {
                bounty: 0,
                hash: Hash::digest(&other),
                size: other.len() as u32,
            }],
        );
    }
    let (status, body) = b.call("GET", "/v1/data/bounties/0/items/1/content", b"");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("neither this node nor its peers"), "{body}");
}
