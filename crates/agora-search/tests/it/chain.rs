//! The chain's objects in the index, kept current by the follower as a real node commits
//! blocks: transactions (failed ones too), accounts, models; its position survives a restart,
//! and a store with another history makes it index the chain again.

#![allow(clippy::unwrap_used)]

use agora_api::testing::TestNode;
use agora_search::chain::ChainIndexer;
use agora_search::{Filters, HashEmbed, Kind, Query, SearchIndex};
use agora_state::{Genesis, GenesisAccount};
use agora_types::{AGR, Hash, Keypair, Message, ModelKind, Transaction};
use std::sync::Arc;
use std::time::Duration;

fn key(name: &str) -> Keypair {
    Keypair::from_seed_label(name)
}

fn genesis(chain: &str) -> Genesis {
    Genesis::new(chain)
        .with_accounts(vec![GenesisAccount {
            address: key("alice").address(),
            balance: 1_000 * AGR,
            bonded: 0,
        }])
        .with_model(
            Hash::digest(b"minilm"),
            "all-MiniLM-L6-v2",
            ModelKind::Embedding,
        )
}

fn send(t: &TestNode, chain: &str, nonce: u64, messages: Vec<Message>) -> Hash {
    let tx = Transaction {
        chain_id: chain.into(),
        sender: key("alice").public(),
        nonce,
        fee: 1_000_000,
        messages,
    }
    .sign(&key("alice"));
    t.node.submit(&tx.encode()).unwrap()
}

fn open(dir: &std::path::Path) -> Arc<SearchIndex> {
    Arc::new(SearchIndex::open(dir, Arc::new(HashEmbed::new(64))).unwrap())
}

fn block(t: &TestNode, follower: &ChainIndexer) -> u64 {
    t.block();
    let h = t.node.snapshot().unwrap().height().unwrap().unwrap();
    assert!(
        t.rt.block_on(follower.wait_for(h, Duration::from_secs(20))),
        "the index never reached block {h}"
    );
    h
}

fn search(index: &SearchIndex, text: &str) -> Vec<agora_search::Hit> {
    index.search(&Query::new(text)).unwrap()
}

#[test]
fn blocks_become_documents_and_the_position_survives_a_restart() {
    let chain = "search-chain";
    let t = TestNode::start(&genesis(chain), "search-validator");
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path());
    let follower = ChainIndexer::start(t.node.clone(), index.clone()).unwrap();
    block(&t, &follower);

    // The genesis: alice's account and the registered model.
    let alice = key("alice").address().to_string();
    let hits = search(&index, &alice);
    assert_eq!(hits[0].id, format!("account:{alice}"));
    assert!(hits[0].exact);
    let hits = search(&index, "embedding model MiniLM");
    assert!(hits.iter().any(|h| h.kind == Kind::Model), "{hits:?}");

    // A transfer, and a registration of a model id already registered (it fails in the block).
    let bob = key("bob").address();
    let paid = send(
        &t,
        chain,
        0,
        vec![Message::Transfer {
            to: bob,
            amount: 5 * AGR,
        }],
    );
    let failed = send(
        &t,
        chain,
        1,
        vec![Message::RegisterModel {
            id: Hash::digest(b"minilm"),
            name: "copycat".into(),
            kind: ModelKind::Embedding,
        }],
    );
    block(&t, &follower);
    let hits = search(&index, &paid.to_hex());
    assert_eq!(hits[0].id, format!("tx:{paid}"));
    assert!(hits[0].exact);
    let doc = index.get(&format!("tx:{paid}")).unwrap().unwrap();
    assert!(doc.title.contains("Transfer of 5 AGR"), "{}", doc.title);
    assert!(doc.addresses.contains(&bob.to_string()));
    let doc = index.get(&format!("tx:{failed}")).unwrap().unwrap();
    assert!(doc.title.ends_with("failed"), "{}", doc.title);
    assert!(doc.body.contains("Failed ("), "{}", doc.body);
    // Bob's account appeared; alice's shows what she sent.
    let doc = index.get(&format!("account:{bob}")).unwrap().unwrap();
    assert!(doc.body.contains("balance 5 AGR"), "{}", doc.body);
    let doc = index.get(&format!("account:{alice}")).unwrap().unwrap();
    assert!(doc.body.contains("sent 2 transactions"), "{}", doc.body);
    // The address filter finds both of bob's documents.
    let hits = index
        .search(&Query::new("transfer").filters(Filters {
            address: Some(bob.to_string()),
            ..Filters::default()
        }))
        .unwrap();
    assert!(hits.iter().all(|h| h.id != format!("account:{alice}")));
    assert!(hits.iter().any(|h| h.id == format!("tx:{paid}")));

    // What anyone may put in a block cannot stop the follower: a transaction naming more
    // accounts than a document keeps, and a reveal whose part number is the largest there is.
    let many = send(
        &t,
        chain,
        2,
        (0..64u8)
            .map(|i| Message::Transfer {
                to: agora_types::Address([i; 20]),
                amount: 1,
            })
            .collect(),
    );
    let reveal = send(
        &t,
        chain,
        3,
        vec![Message::RevealJob {
            job_id: Hash([1; 32]),
            verifier: bob,
            part: u16::MAX,
            parts: 1,
            data: vec![0; 8],
        }],
    );
    let h = block(&t, &follower);
    let doc = index.get(&format!("tx:{many}")).unwrap().unwrap();
    assert_eq!(doc.addresses.len(), agora_search::doc::MAX_ADDRESSES);
    assert_eq!(doc.addresses[0], alice, "the sender is kept first");
    assert!(index.get(&format!("tx:{reveal}")).unwrap().is_some());

    // A restart goes on from the position: nothing indexed twice, nothing missed.
    let docs = index.len().unwrap();
    drop(follower);
    drop(index);
    let index = open(dir.path());
    let follower = ChainIndexer::start(t.node.clone(), index.clone()).unwrap();
    assert_eq!(follower.height(), Some(h));
    send(&t, chain, 4, vec![Message::Bond { amount: AGR }]);
    block(&t, &follower);
    assert_eq!(index.len().unwrap(), docs + 1);
    // Among transactions, the words find it first (the 64 new accounts above also mention
    // stake, and the approximate graph's order among them varies from run to run).
    let hits = index
        .search(&Query::new("bond stake").filters(Filters {
            kinds: vec![Kind::Transaction],
            ..Filters::default()
        }))
        .unwrap();
    assert!(hits[0].title.starts_with("Bond 1 AGR"), "{hits:?}");
    drop(follower);

    // Another chain's store under the same index: the old chain's documents go.
    let other = TestNode::start(&genesis("another-chain"), "other-validator");
    let follower = ChainIndexer::start(other.node.clone(), index.clone()).unwrap();
    block(&other, &follower);
    assert!(index.get(&format!("tx:{paid}")).unwrap().is_none());
    assert!(index.get(&format!("account:{alice}")).unwrap().is_some());
}
