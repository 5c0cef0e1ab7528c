//! The kept topic classifier (`agora-zk/models/agora-topic-v1.zkm`, trained by `agora bench zk
//! --classifier`) on texts written for this test, none from its training set: with the real
//! MiniLM, each is put in the part of a contract library it is about.

use agora_infer::bert::Embedder;
use agora_zk::topic::{classify, topic_model};

#[test]
fn the_topic_classifier_tells_tokens_from_governance_proxies_and_access_control() {
    let Some(minilm) = crate::minilm() else {
        return;
    };
    let embedder = Embedder::load(&minilm.dir, 2).unwrap();
    let model = topic_model().unwrap();
    let cases = [
        (
            "Moves an amount of tokens from the sender to the recipient and lowers the allowance \
             the owner gave the spender. Emits a Transfer event. The total supply and the balance \
             of each holder.",
            "token",
        ),
        (
            "A proposal passes when enough voting power votes for it before the deadline and the \
             quorum is reached; then it is queued in the timelock and executed.",
            "governance",
        ),
        (
            "Changes the implementation contract behind the proxy: calls are delegated to the new \
             logic while the storage stays, and only the admin may upgrade it.",
            "proxy",
        ),
    ];
    let texts: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let vectors = embedder.embed(&texts).unwrap();
    for ((text, want), v) in cases.iter().zip(&vectors) {
        let (got, scores) = classify(&model, v).unwrap();
        assert_eq!(got, *want, "{text}: scores {scores:?}");
    }
}
