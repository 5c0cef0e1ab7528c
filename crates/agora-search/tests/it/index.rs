//! The index with a tiny embedding model (hashed words): words, meaning, fusion, filters,
//! exact lookups, snippets, bad input, and recovery after a crash.

use std::sync::Arc;

use agora_search::index::MAX_QUERY_CHARS;
use agora_search::{Doc, Error, Filters, HashEmbed, Kind, Mode, Query, SearchIndex};

fn embed() -> Arc<HashEmbed> {
    Arc::new(HashEmbed::new(64))
}

fn corpus() -> Vec<Doc> {
    let mut docs = vec![
        Doc::new(
            "article:guide/reentrancy",
            Kind::Article,
            "Reentrancy guards",
            "A reentrancy guard stops a contract from being called again before its first call ends. \
             Write state before external calls.",
        ),
        Doc::new(
            "article:guide/permit",
            Kind::Article,
            "Approvals by signature",
            "The permit function lets a token holder approve a spender with a signed message, \
             without sending a transaction.",
        ),
        Doc::new(
            "article:guide/staking",
            Kind::Article,
            "Staking and slashing",
            "Validators lock stake; a validator that signs two blocks at one height is slashed.",
        ),
    ];
    let mut tx = Doc::new(
        "tx:ab12cd34",
        Kind::Transaction,
        "Transfer of 5 AGR",
        "alice sent 5 AGR to bob in block 7",
    );
    tx.keys = vec!["0xAB12CD34EF".into()];
    tx.addresses = vec!["agora1alice".into(), "agora1bob".into()];
    tx.time_ms = 7_000;
    docs.push(tx);
    let mut provider = Doc::new(
        "provider:agora1carol",
        Kind::Provider,
        "Provider carol",
        "Serves SmolLM2 chat completions and MiniLM embeddings; stake 1,000 AGR.",
    );
    provider.addresses = vec!["agora1carol".into()];
    provider.time_ms = 9_000;
    provider.subnet = Some(3);
    docs.push(provider);
    docs
}

fn ids(hits: &[agora_search::Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.id.as_str()).collect()
}

#[test]
fn words_meaning_and_fusion_find_the_document_with_a_highlighted_snippet() {
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(dir.path(), embed()).unwrap();
    assert_eq!(index.upsert(corpus()).unwrap(), 5);
    for mode in [Mode::Bm25, Mode::Vector, Mode::Hybrid] {
        let hits = index
            .search(&Query::new("reentrancy guard external calls").mode(mode))
            .unwrap();
        assert_eq!(
            hits[0].id,
            "article:guide/reentrancy",
            "{mode:?}: {:?}",
            ids(&hits)
        );
    }
    let hits = index.search(&Query::new("signed approval")).unwrap();
    let top = &hits[0];
    assert_eq!(top.id, "article:guide/permit");
    assert!(top.snippet.contains("<b>signed</b>"), "{}", top.snippet);
    assert!(
        top.bm25_rank.is_some() && top.vector_rank.is_some(),
        "{top:?}"
    );
    // Stemming: "slashing" finds "slashed".
    let hits = index
        .search(&Query::new("slashing").mode(Mode::Bm25))
        .unwrap();
    assert_eq!(ids(&hits), ["article:guide/staking"]);
    // A document whose words are absent is not in a BM25 ranking.
    let hits = index.search(&Query::new("zebra").mode(Mode::Bm25)).unwrap();
    assert!(hits.is_empty(), "{:?}", ids(&hits));
}

#[test]
fn filters_restrict_both_rankings() {
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(dir.path(), embed()).unwrap();
    index.upsert(corpus()).unwrap();
    for mode in [Mode::Bm25, Mode::Vector, Mode::Hybrid] {
        let only = |filters: Filters| {
            let hits = index
                .search(
                    &Query::new("AGR stake chat transfer")
                        .mode(mode)
                        .filters(filters),
                )
                .unwrap();
            hits.into_iter().map(|h| h.id).collect::<Vec<_>>()
        };
        let kinds = only(Filters {
            kinds: vec![Kind::Provider],
            ..Filters::default()
        });
        assert_eq!(kinds, ["provider:agora1carol"], "{mode:?}");
        let by_address = only(Filters {
            address: Some("AGORA1BOB".into()),
            ..Filters::default()
        });
        assert_eq!(by_address, ["tx:ab12cd34"], "{mode:?}");
        let by_time = only(Filters {
            since_ms: Some(8_000),
            until_ms: Some(10_000),
            ..Filters::default()
        });
        assert_eq!(by_time, ["provider:agora1carol"], "{mode:?}");
        let by_subnet = only(Filters {
            subnet: Some(3),
            ..Filters::default()
        });
        assert_eq!(by_subnet, ["provider:agora1carol"], "{mode:?}");
        let none = only(Filters {
            subnet: Some(4),
            ..Filters::default()
        });
        assert!(none.is_empty(), "{mode:?}: {none:?}");
    }
    assert!(matches!(
        Kind::parse("blocks"),
        Err(Error::UnknownFilter(_))
    ));
    assert!(matches!(Mode::parse("fuzzy"), Err(Error::UnknownFilter(_))));
}

#[test]
fn a_hash_or_id_typed_in_whole_goes_straight_to_its_object() {
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(dir.path(), embed()).unwrap();
    index.upsert(corpus()).unwrap();
    for typed in [
        "0xab12cd34ef",
        "AB12CD34EF",
        "tx:ab12cd34",
        "provider:agora1carol",
    ] {
        let hits = index.search(&Query::new(typed)).unwrap();
        assert_eq!(hits.len(), 1, "{typed}: {:?}", ids(&hits));
        assert!(hits[0].exact, "{typed}");
    }
    // A word that happens to be no key searches as usual.
    let hits = index.search(&Query::new("permit")).unwrap();
    assert!(!hits[0].exact);
    // A plain word is never an exact lookup, even when a document claims it as a key.
    let mut claim = Doc::new("article:claim", Kind::Article, "claims", "nothing here");
    claim.keys = vec!["signature".into()];
    index.upsert(vec![claim]).unwrap();
    let hits = index.search(&Query::new("signature")).unwrap();
    assert!(hits.iter().all(|h| !h.exact), "{:?}", ids(&hits));
}

#[test]
fn bad_queries_and_documents_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(dir.path(), embed()).unwrap();
    index.upsert(corpus()).unwrap();
    assert!(matches!(
        index.search(&Query::new("  ")),
        Err(Error::EmptyQuery)
    ));
    let huge = "word ".repeat(MAX_QUERY_CHARS);
    assert!(matches!(
        index.search(&Query::new(huge)),
        Err(Error::QueryTooLong { .. })
    ));
    // Query syntax that does not parse is searched as words.
    let hits = index
        .search(&Query::new("reentrancy AND (( \"unclosed"))
        .unwrap();
    assert_eq!(hits[0].id, "article:guide/reentrancy");
    // A bad document is refused whole; nothing of its batch is written.
    let before = index.len().unwrap();
    let bad = vec![
        Doc::new("article:new", Kind::Article, "new", "fresh words"),
        Doc::new("", Kind::Article, "no id", "x"),
    ];
    assert!(matches!(index.upsert(bad), Err(Error::BadDoc { .. })));
    assert_eq!(index.len().unwrap(), before);
    // Huge documents are cut, not refused.
    let big = Doc::new(
        "article:big",
        Kind::Article,
        "big",
        "lorem ".repeat(100_000),
    );
    index.upsert(vec![big]).unwrap();
    assert!(index.get("article:big").unwrap().unwrap().body.len() <= agora_search::doc::MAX_BODY);
}

#[test]
fn replacing_and_removing_documents_updates_every_ranking() {
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(dir.path(), embed()).unwrap();
    index.upsert(corpus()).unwrap();
    assert_eq!(
        index.upsert(corpus()).unwrap(),
        0,
        "unchanged documents cost nothing"
    );
    let mut changed = Doc::new(
        "article:guide/staking",
        Kind::Article,
        "Delegation",
        "Delegators choose a validator and share its rewards.",
    );
    changed.time_ms = 1;
    assert_eq!(index.upsert(vec![changed]).unwrap(), 1);
    for mode in [Mode::Bm25, Mode::Vector] {
        let hits = index
            .search(&Query::new("slashed validator signs two blocks").mode(mode))
            .unwrap();
        let top = hits.first().map(|h| h.title.as_str());
        assert_ne!(top, Some("Staking and slashing"), "{mode:?}");
    }
    let hits = index
        .search(&Query::new("delegators rewards").mode(Mode::Bm25))
        .unwrap();
    assert_eq!(ids(&hits), ["article:guide/staking"]);
    assert_eq!(index.remove(&["article:guide/staking", "nope"]).unwrap(), 1);
    for mode in [Mode::Bm25, Mode::Vector, Mode::Hybrid] {
        let hits = index
            .search(&Query::new("delegators rewards").mode(mode))
            .unwrap();
        assert!(!ids(&hits).contains(&"article:guide/staking"), "{mode:?}");
    }
    let stats = index.stats().unwrap();
    assert_eq!((stats.docs, stats.vectors), (4, 4));
}

#[test]
fn the_index_rebuilds_from_its_record_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let text_dir = dir.path().join("text");
    let stale = dir.path().join("stale-text");
    {
        let index = SearchIndex::open(dir.path(), embed()).unwrap();
        index.upsert(corpus()).unwrap();
    }
    // The full-text files as they were before the last write: a crash after the record
    // committed and before tantivy did.
    copy_dir(&text_dir, &stale).unwrap();
    {
        let index = SearchIndex::open(dir.path(), embed()).unwrap();
        index
            .upsert(vec![Doc::new(
                "article:late",
                Kind::Article,
                "Late news",
                "quokka sightings",
            )])
            .unwrap();
    }
    std::fs::remove_dir_all(&text_dir).unwrap();
    copy_dir(&stale, &text_dir).unwrap();
    let index = SearchIndex::open(dir.path(), embed()).unwrap();
    let hits = index
        .search(&Query::new("quokka").mode(Mode::Bm25))
        .unwrap();
    assert_eq!(ids(&hits), ["article:late"]);
    drop(index);

    // Garbage in the full-text files: rebuilt, nothing lost.
    for e in std::fs::read_dir(&text_dir).unwrap() {
        let p = e.unwrap().path();
        std::fs::write(&p, b"garbage").unwrap();
    }
    let index = SearchIndex::open(dir.path(), embed()).unwrap();
    assert_eq!(index.len().unwrap(), 6);
    let hits = index
        .search(&Query::new("quokka").mode(Mode::Bm25))
        .unwrap();
    assert_eq!(ids(&hits), ["article:late"]);
    drop(index);

    // Deleted outright: the same.
    std::fs::remove_dir_all(&text_dir).unwrap();
    let index = SearchIndex::open(dir.path(), embed()).unwrap();
    let hits = index
        .search(&Query::new("permit signed").mode(Mode::Bm25))
        .unwrap();
    assert_eq!(hits[0].id, "article:guide/permit");
    drop(index);

    // Another embedding model: every vector is made again, in its dimension.
    let index = SearchIndex::open(dir.path(), Arc::new(HashEmbed::new(32))).unwrap();
    let hits = index
        .search(&Query::new("quokka sightings").mode(Mode::Vector))
        .unwrap();
    assert_eq!(hits[0].id, "article:late");
    assert_eq!(index.stats().unwrap().model, "hashed-words-32");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Random upserts and removals: every live document is found by its id, none removed is.
#[test]
fn random_writes_keep_every_ranking_consistent_with_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(dir.path(), embed()).unwrap();
    let mut live = std::collections::BTreeMap::new();
    let mut seed = 0x9e37_79b9_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let words = [
        "oracle", "bridge", "vault", "swap", "lend", "mint", "burn", "vote",
    ];
    for round in 0..40 {
        if next() % 4 == 0 && !live.is_empty() {
            let k = *live
                .keys()
                .nth((next() % live.len() as u64) as usize)
                .unwrap();
            index.remove(&[format!("article:{k}").as_str()]).unwrap();
            live.remove(&k);
        } else {
            let mut batch = Vec::new();
            for _ in 0..(1 + next() % 5) {
                let k = next() % 30;
                let w = words[(next() % 8) as usize];
                // Accounts and subnets change with each write of a document.
                let who = format!("agora1who{}", next() % 4);
                let subnet = u16::try_from(next() % 3).unwrap();
                // Half share one of three texts for their vectors (one graph point each).
                let about = (next() % 2 == 0).then(|| format!("gist {}", next() % 3));
                batch.push(Doc {
                    about,
                    addresses: vec![who.clone()],
                    subnet: Some(subnet),
                    ..Doc::new(
                        format!("article:{k}"),
                        Kind::Article,
                        format!("{w} {k}"),
                        format!("round {round} about {w}"),
                    )
                });
                live.insert(k, (w, who, subnet));
            }
            index.upsert(batch).unwrap();
        }
    }
    assert_eq!(index.len().unwrap(), live.len() as u64);
    // Every live document, and only those, by meaning (points shared by several documents).
    let all: std::collections::BTreeSet<String> = index
        .nearest(
            &index.embed_query("vault").unwrap(),
            &Filters::default(),
            100,
        )
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let live_ids: std::collections::BTreeSet<String> =
        live.keys().map(|k| format!("article:{k}")).collect();
    assert_eq!(all, live_ids);
    // What the account and subnet filters find is exactly what the record says.
    for i in 0..4 {
        let who = format!("agora1who{i}");
        let filters = Filters {
            address: Some(who.clone()),
            ..Filters::default()
        };
        let found: std::collections::BTreeSet<String> = index
            .recent(&filters, 100)
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        let expected: std::collections::BTreeSet<String> = live
            .iter()
            .filter(|(_, (_, a, _))| *a == who)
            .map(|(k, _)| format!("article:{k}"))
            .collect();
        assert_eq!(found, expected, "{who}");
        let near: std::collections::BTreeSet<String> = index
            .nearest(&index.embed_query("vault").unwrap(), &filters, 100)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(near, expected, "{who}, by meaning");
    }
    for subnet in 0..3u16 {
        let found = index
            .recent(
                &Filters {
                    subnet: Some(subnet),
                    ..Filters::default()
                },
                100,
            )
            .unwrap();
        let expected = live.values().filter(|(_, _, s)| *s == subnet).count();
        assert_eq!(found.len(), expected, "subnet {subnet}");
        assert!(found.iter().all(|d| d.subnet == Some(subnet)));
    }
    for (k, (w, _, _)) in &live {
        let hits = index.search(&Query::new(format!("article:{k}"))).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].title, format!("{w} {k}"));
    }
    for k in 0..30u64 {
        if !live.contains_key(&k) {
            let found = index.search(&Query::new(format!("article:{k}"))).unwrap();
            assert!(found.iter().all(|h| h.id != format!("article:{k}")));
        }
    }
    let hits = index
        .search(&Query::new("vault").mode(Mode::Vector).limit(100))
        .unwrap();
    let found: std::collections::BTreeSet<_> = hits.iter().map(|h| h.id.clone()).collect();
    assert_eq!(found.len(), hits.len(), "no document twice");
    assert!(
        found
            .iter()
            .all(|id| live.contains_key(&id["article:".len()..].parse::<u64>().unwrap()))
    );
}

/// Counts the texts it embeds.
#[derive(Debug)]
struct Counting {
    inner: HashEmbed,
    texts: std::sync::atomic::AtomicUsize,
}

impl agora_search::Embed for Counting {
    fn model(&self) -> String {
        self.inner.model()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        self.texts
            .fetch_add(texts.len(), std::sync::atomic::Ordering::SeqCst);
        self.inner.embed(texts)
    }
}

#[test]
fn a_text_embedded_lately_costs_no_model_pass() {
    let dir = tempfile::tempdir().unwrap();
    let counting = Arc::new(Counting {
        inner: HashEmbed::new(64),
        texts: Default::default(),
    });
    let index = SearchIndex::open(dir.path(), counting.clone()).unwrap();
    let embedded = || counting.texts.load(std::sync::atomic::Ordering::SeqCst);
    // Fifty transfers share their gist: one text embedded for all.
    let transfers: Vec<Doc> = (0..50)
        .map(|i| Doc {
            about: Some("Transfer: an account sent AGR tokens to another account.".into()),
            ..Doc::new(
                format!("tx:{i:04}"),
                Kind::Transaction,
                format!("Transfer of {i} AGR"),
                format!("sent {i} AGR"),
            )
        })
        .collect();
    index.upsert(transfers.clone()).unwrap();
    assert_eq!(embedded(), 1);
    assert_eq!(
        index.vector("tx:0000").unwrap(),
        index.vector("tx:0049").unwrap()
    );
    // A later batch of the same gist, and a repeated query, come from the cache.
    index
        .upsert(vec![Doc {
            id: "tx:0050".into(),
            ..transfers[0].clone()
        }])
        .unwrap();
    assert_eq!(embedded(), 1);
    let q = index.embed_query("staking rewards").unwrap();
    assert_eq!(embedded(), 2);
    assert_eq!(index.embed_query("staking rewards").unwrap(), q);
    assert_eq!(embedded(), 2);
    // Each transfer is still found by its own words.
    let hits = index
        .search(&Query::new("sent 17 AGR").mode(Mode::Bm25))
        .unwrap();
    assert_eq!(hits[0].id, "tx:0017");
}
