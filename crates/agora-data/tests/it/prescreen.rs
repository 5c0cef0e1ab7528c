//! The pre-screen's rules, each with items it must reject and items it must pass.

use agora_data::prescreen::{DuplicateIndex, LEXICAL_NEAR, Prescreen, jaccard, spam, trigrams};
use agora_types::{AGR, BountySpec, RejectReason};

fn spec(schema: &str) -> BountySpec {
    BountySpec {
        description: "Q&A".into(),
        schema: schema.into(),
        reward_per_item: AGR,
        review_fee: 0,
        budget: AGR,
        quorum: 1,
        review_stake: AGR,
        item_bond: 0,
        deadline: 10,
        max_item_bytes: 200,
        duplicate_bps: 9_000,
        royalty_bps: 0,
    }
}

const QA: &str = r#"{"type":"object","required":["question","answer"],
  "properties":{"question":{"type":"string","minLength":10},"answer":{"type":"string"}},
  "additionalProperties":false}"#;

#[test]
fn the_schema_and_the_size_decide_first() {
    let p = Prescreen::new(&spec(QA)).unwrap();
    let ok =
        br#"{"question":"What does a reentrancy guard do?","answer":"It refuses nested calls."}"#;
    assert!(p.check(ok).unwrap().contains("reentrancy guard"));
    for (bad, reason, words) in [
        (&b"not json"[..], RejectReason::Schema, "not JSON"),
        (
            br#"{"question":"short","answer":"x"}"#,
            RejectReason::Schema,
            "/question",
        ),
        (
            br#"{"question":"What does it do here?"}"#,
            RejectReason::Schema,
            "answer",
        ),
        (
            br#"{"question":"What does it do here?","answer":"a","extra":1}"#,
            RejectReason::Schema,
            "extra",
        ),
        (b"", RejectReason::TooLarge, "0 bytes"),
        (&[b' '; 201][..], RejectReason::TooLarge, "201 bytes"),
    ] {
        let r = p.check(bad).unwrap_err();
        assert_eq!(r.reason, reason, "{}", String::from_utf8_lossy(bad));
        assert!(r.detail.contains(words), "{words:?} not in {:?}", r.detail);
        assert!(r.detail.len() <= agora_types::MAX_SCREEN_DETAIL_BYTES);
    }
    // A schema that is not one, or that points elsewhere, judges nothing.
    assert!(Prescreen::new(&spec("[]")).is_err());
    assert!(Prescreen::new(&spec(r#"{"type":"no such type"}"#)).is_err());
    assert!(Prescreen::new(&spec(r#"{"$ref":"http://127.0.0.1:1/schema.json"}"#)).is_err());
}

#[test]
fn each_spam_rule_rejects_its_examples_and_passes_real_text() {
    let spammy = [
        ("", "no text"),
        ("!!", "no text"),
        (
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "repeated characters",
        ),
        (
            "ab ab ab ab ab ab ab ab ab ab ab ab ab ab",
            "repeated characters",
        ),
        (
            "buy now buy now buy now buy now cheap cheap buy now buy now",
            "repeated words",
        ),
        (
            "see https://a.example/x https://b.example/y www.c.example here",
            "links only",
        ),
        ("#$%^&*()#$%^&*()_+{}|:<>?~ okay", "symbols"),
    ];
    for (text, why) in spammy {
        let got = spam(text).unwrap_or_else(|| panic!("{text:?} passed"));
        assert!(got.starts_with(why), "{text:?}: {got}");
    }
    let real = [
        "A reentrancy guard makes a function refuse to be called again before it returns.",
        "Use SafeERC20 when a token may not return a boolean from transfer.",
        "The docs at https://docs.example/guide explain how upgrades keep storage layouts.",
        "x = 1; y = x + 2; // a short snippet with some symbols",
        "Yes.",
        "The the the cat sat on the mat with the other cat near the door.",
        // Long text has few distinct characters for its length: still text.
        "Declares: interface IERC4626, event Deposit, event Withdraw, function asset, function totalAssets, function convertToShares, function convertToAssets, function maxDeposit, function previewDeposit, function deposit, function maxMint, function previewMint, function mint.",
    ];
    for text in real {
        assert_eq!(spam(text), None, "{text:?}");
    }
}

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

#[test]
fn a_near_duplicate_names_the_most_similar_earlier_item() {
    let mut idx = DuplicateIndex::new();
    idx.add(0, unit(&[1.0, 0.0, 0.0]), "the first sentence about tokens");
    idx.add(1, unit(&[0.0, 1.0, 0.0]), "another text entirely");
    idx.add(2, unit(&[1.0, 0.0, 0.0]), "the first sentence about tokens");
    idx.add(5, unit(&[0.0, 0.0, 1.0]), "a later item");
    // A paraphrase: alike in meaning over the threshold.
    let near = unit(&[1.0, 0.1, 0.0]);
    let r = idx
        .duplicate(&near, "words in another order", 3, 0.95)
        .unwrap();
    assert_eq!(
        (r.reason, r.duplicate_of),
        (RejectReason::Duplicate, Some(0))
    );
    assert!(r.detail.contains("threshold"), "{}", r.detail);
    // Below the threshold, or only later items alike: not a duplicate.
    let half = unit(&[1.0, 1.0, 0.0]);
    assert!(idx.duplicate(&half, "something new", 3, 0.95).is_none());
    let later = unit(&[0.0, 0.0, 1.0]);
    assert!(idx.duplicate(&later, "a later item", 3, 0.95).is_none());
    assert_eq!(
        idx.duplicate(&later, "x", 6, 0.95).unwrap().duplicate_of,
        Some(5)
    );
    // An edited copy: below the threshold in meaning, but most of its characters the same.
    let edited = unit(&[1.0, 0.7, 0.0]);
    let r = idx
        .duplicate(&edited, "The frist sentence about tokens!", 3, 0.95)
        .expect("an edited copy");
    assert_eq!(r.duplicate_of, Some(0));
    assert!(r.detail.contains("edited copy"), "{}", r.detail);
    // Not alike enough in meaning for the edit rule, however close the characters.
    let far = unit(&[1.0, 3.0, 0.0]);
    assert!(
        idx.duplicate(&far, "the first sentence about tokens", 3, 0.95)
            .is_none()
    );
}

#[test]
fn trigram_similarity_sees_edits_not_topics() {
    let a = trigrams("Returns the address of the current owner.");
    assert_eq!(jaccard(&a, &a), 1.0);
    let typo = trigrams("returns the adress of the curent owner");
    let other = trigrams("Transfers tokens from the caller to a recipient.");
    assert!(jaccard(&a, &typo) >= LEXICAL_NEAR, "{}", jaccard(&a, &typo));
    assert!(jaccard(&a, &other) < 0.2, "{}", jaccard(&a, &other));
}
