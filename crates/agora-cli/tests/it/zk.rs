//! `agora zk …` against a real node, as its users run it: register the risk scorer, read an
//! account's features, prove its score is below a threshold without showing it, verify the proof,
//! send it as an attestation and read it back; the same proof sent twice counts once.

use crate::*;
use serde_json::Value;

fn json(home: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&agora_ok(home, args)).unwrap()
}

#[test]
fn an_account_proves_its_risk_score_below_a_threshold_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    agora_ok(home, &["wallet", "new", "alice"]);
    let alice = json(home, &["wallet", "show", "alice", "--json"])["address"]
        .as_str()
        .unwrap()
        .to_string();
    agora_ok(
        home,
        &[
            "genesis",
            "init",
            "--chain-id",
            "zk-cli",
            "--account",
            &format!("{alice}=1000AGR"),
        ],
    );
    let node = NodeProc::start(home, 250);
    let api = node.api.clone();
    let model = home.join("risk.zkm");
    let model = model.to_str().unwrap();
    agora_ok(home, &["zk", "model", "risk", "--out", model]);
    let key = agora_ok(home, &["zk", "key", model]);
    let id = key.split_whitespace().nth(2).unwrap().to_string();
    agora_ok(
        home,
        &["zk", "register", model, "--from", "alice", "--node", &api],
    );
    let models = json(home, &["zk", "models", "--node", &api, "--json"]);
    assert_eq!(models[0]["id"], id.as_str(), "{models}");
    assert_eq!(models[0]["weights"], 8);

    // The scorer's input for alice, read from the node: 1,000 AGR is 8·log2(1001) = 72.
    let f = json(home, &["zk", "features", &alice, "--node", &api, "--json"]);
    let features: Vec<String> = f["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(features[0], "72", "{f}");
    let input = features.join(",");
    let proof = home.join("proof.json");
    let proof = proof.to_str().unwrap();
    let out = agora_ok(
        home,
        &[
            "zk",
            "prove",
            model,
            "--input",
            &input,
            "--threshold",
            "200",
            "--hide",
            "--attester",
            &alice,
            "--node",
            &api,
            "--out",
            proof,
        ],
    );
    assert!(out.contains("output 0 < 200"), "{out}");
    let written: Value = serde_json::from_slice(&std::fs::read(proof).unwrap()).unwrap();
    assert!(
        written["claim"]["outputs"].is_null(),
        "the score stays private"
    );
    assert!(agora_ok(home, &["zk", "verify", proof, "--node", &api]).contains("valid"));
    agora_ok(
        home,
        &["zk", "attest", proof, "--from", "alice", "--node", &api],
    );
    let a = json(
        home,
        &["zk", "attestations", &alice, "--node", &api, "--json"],
    );
    assert_eq!(a["next_seq"], 1, "{a}");
    assert_eq!(a["attestations"][0]["model"], id.as_str(), "{a}");
    assert_eq!(a["attestations"][0]["claim"]["below"], true, "{a}");
    assert_eq!(a["attestations"][0]["claim"]["threshold"], 200, "{a}");

    // The same proof again: bound to attestation number 0, which is spent.
    let again = agora(
        home,
        &["zk", "attest", proof, "--from", "alice", "--node", &api],
    );
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("does not verify"), "{err}");
    // A corrupted proof file is refused locally with a reason.
    let mut bad = written.clone();
    bad["proof"] = Value::String("00".repeat(100));
    std::fs::write(proof, serde_json::to_vec(&bad).unwrap()).unwrap();
    let refused = agora(home, &["zk", "verify", proof, "--node", &api]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("invalid proof"));
}
