//! The labelled search set, scored as `agora bench search` scores it: with MiniLM, the hybrid
//! ranking must beat BM25 alone and vectors alone (nDCG@10 higher than both, recall@10 no lower).
//! The corpus needs OpenZeppelin Contracts 5.1.0 (`AGORA_OPENZEPPELIN`, installed by `.ci/run`);
//! without it the test skips, unless `AGORA_REQUIRE_CORPUS=1`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use agora_search::eval;
use agora_search::{Embed, LocalEmbed, Mode, SearchIndex};

#[test]
fn the_hybrid_beats_bm25_and_vectors_on_the_labelled_queries() {
    let oz = std::env::var_os("AGORA_OPENZEPPELIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/ci-node/node_modules/@openzeppelin/contracts")
        });
    if !oz.join("package.json").is_file() {
        assert!(
            std::env::var("AGORA_REQUIRE_CORPUS").as_deref() != Ok("1"),
            "AGORA_REQUIRE_CORPUS=1 but OpenZeppelin Contracts are not at {}",
            oz.display()
        );
        eprintln!(
            "SKIPPED: OpenZeppelin Contracts not at {}; set AGORA_OPENZEPPELIN",
            oz.display()
        );
        return;
    }
    let Some(minilm) = crate::minilm() else {
        return;
    };
    let embed: Arc<dyn Embed> = Arc::new(LocalEmbed::load(&minilm, 2).unwrap());
    let suite = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../agora-audit/suite");
    let docs = agora_bench::search::corpus(&oz, &suite).unwrap();
    let ids: BTreeSet<String> = docs.iter().map(|d| d.id.clone()).collect();
    let judged = eval::load_judged(agora_bench::search::LABELLED, &ids).unwrap();
    assert!(judged.len() >= 60, "{} labelled queries", judged.len());
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(dir.path(), embed).unwrap();
    index.upsert(docs).unwrap();
    let bm25 = eval::evaluate(&index, &judged, Mode::Bm25).unwrap();
    let vector = eval::evaluate(&index, &judged, Mode::Vector).unwrap();
    let hybrid = eval::evaluate(&index, &judged, Mode::Hybrid).unwrap();
    eprintln!(
        "nDCG@10 / recall@10: bm25 {:.3}/{:.3}, vector {:.3}/{:.3}, hybrid {:.3}/{:.3}",
        bm25.ndcg_at_10,
        bm25.recall_at_10,
        vector.ndcg_at_10,
        vector.recall_at_10,
        hybrid.ndcg_at_10,
        hybrid.recall_at_10
    );
    assert!(hybrid.ndcg_at_10 > bm25.ndcg_at_10 && hybrid.ndcg_at_10 > vector.ndcg_at_10);
    assert!(hybrid.recall_at_10 >= bm25.recall_at_10 && hybrid.recall_at_10 >= vector.recall_at_10);
    // Neither ranking is degenerate: each finds most answers on its own.
    assert!(
        bm25.ndcg_at_10 > 0.6 && vector.ndcg_at_10 > 0.6,
        "{bm25:?} {vector:?}"
    );
}
