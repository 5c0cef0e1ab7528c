//! `agora data …` against a real node, as its users run it: a requester posts a bounty, a
//! contributor submits items (one against the schema is refused before paying, one is an edited
//! copy of another), three reviewers run `agora data review` (MiniLM pre-screen, commit-reveal
//! votes), and the settled dataset is exported with its proofs and checked.

use crate::infer::{models_available, models_dir};
use crate::*;
use serde_json::Value;
use std::time::{Duration, Instant};

fn json(home: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&agora_ok(home, args)).unwrap()
}

fn bounty(home: &Path, api: &str) -> Value {
    json(
        home,
        &["data", "bounty", "show", "0", "--node", api, "--json"],
    )
}

#[test]
fn a_bounty_from_post_to_an_exported_dataset_through_the_cli() {
    if !models_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let wallets = ["requester", "alice", "rev1", "rev2", "rev3"];
    let mut args = vec![
        "genesis".to_string(),
        "init".into(),
        "--chain-id".into(),
        "data-cli".into(),
    ];
    for w in wallets {
        agora_ok(home, &["wallet", "new", w]);
        let v = json(home, &["wallet", "show", w, "--json"]);
        args.push("--account".into());
        args.push(format!("{}=1000AGR", v["address"].as_str().unwrap()));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    agora_ok(home, &args);
    // Windows of 20 blocks: 5 s each, room for a reviewer's model pass and transaction.
    let node = NodeProc::start(home, 250);
    let api = node.api.clone();
    let tx = |from: &str, rest: &[&str]| {
        let mut args = vec!["data"];
        args.extend(rest);
        args.extend(["--from", from, "--node", &api]);
        agora_ok(home, &args)
    };
    for r in ["rev1", "rev2", "rev3"] {
        tx(r, &["stake", "--amount", "50AGR"]);
    }
    let out = tx(
        "requester",
        &[
            "bounty",
            "create",
            "--description",
            "Short explanations of Solidity security terms",
            "--schema",
            r#"{"type":"object","required":["term","explanation"],"properties":{"explanation":{"type":"string","minLength":20}}}"#,
            "--reward",
            "1AGR",
            "--budget",
            "20AGR",
            "--quorum",
            "1",
            "--deadline-blocks",
            "40",
        ],
    );
    assert!(out.contains("bounty 0 posted"), "{out}");
    let items = dir.path().join("items");
    std::fs::create_dir_all(&items).unwrap();
    let write = |name: &str, text: &str| {
        let p = items.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let a = write(
        "a.json",
        r#"{"term":"reentrancy","explanation":"A contract calls out before updating its own state, so the callee can call back in and act on the stale state."}"#,
    );
    let b = write(
        "b.json",
        r#"{"term":"front-running","explanation":"Someone who sees a pending transaction gets their own included first to profit from the first one's effect."}"#,
    );
    let copy = write(
        "copy.json",
        r#"{"term":"Reentrancy","explanation":"a contract calls out before updating its own state, so the calee can call back in and act on the stale state!"}"#,
    );
    let bad = write("bad.json", r#"{"term":"gas","explanation":"short"}"#);
    // Against the schema: refused before anything is paid.
    let out = agora(
        home,
        &[
            "data", "submit", "--bounty", "0", &bad, "--from", "alice", "--node", &api,
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("would be rejected (schema)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tx("alice", &["submit", "--bounty", "0", &a, &b]);
    assert!(out.contains("item 0/1 submitted"), "{out}");
    tx("alice", &["submit", "--bounty", "0", &copy]);

    // Three reviewers review until the items are decided.
    let models = models_dir();
    let reviewers: Vec<std::process::Child> = ["rev1", "rev2", "rev3"]
        .iter()
        .map(|r| {
            std::process::Command::new(env!("CARGO_BIN_EXE_agora"))
                .arg("--home")
                .arg(home)
                .arg("--models-dir")
                .arg(&models)
                .args([
                    "data",
                    "review",
                    "--from",
                    r,
                    "--node",
                    &api,
                    "--seconds",
                    "120",
                ])
                .env("AGORA_PASSWORD", PASSWORD)
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    let start = Instant::now();
    let decided = loop {
        let b = bounty(home, &api);
        let stages: Vec<String> = b["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let s = &v["item"]["stage"];
                match s["stage"].as_str().unwrap() {
                    "rejected" => format!("rejected:{}", s["reason"].as_str().unwrap()),
                    other => other.to_string(),
                }
            })
            .collect();
        if stages.len() == 3
            && stages
                .iter()
                .all(|s| s == "accepted" || s.starts_with("rejected"))
        {
            break stages;
        }
        assert!(
            start.elapsed() < Duration::from_secs(115),
            "items not decided: {stages:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    for mut r in reviewers {
        let _ = r.kill();
        let _ = r.wait();
    }
    // The edited copy is a near-duplicate of item 0; the others are accepted.
    assert_eq!(decided, ["accepted", "accepted", "rejected:duplicate"]);
    let b = bounty(home, &api);
    let dup = &b["items"][2]["item"]["screen"];
    assert_eq!(dup["duplicate_of"], 0, "{dup}");

    // Settled: the dataset, exported with proofs, checks against the root.
    let settle_at = b["bounty"]["settle_at"].as_u64().unwrap();
    node.wait_height(settle_at + 1);
    let b = bounty(home, &api);
    let root = b["bounty"]["dataset"].as_str().unwrap().to_string();
    let out_path = dir.path().join("dataset.jsonl");
    let out = agora_ok(
        home,
        &[
            "data",
            "export",
            &root,
            "--node",
            &api,
            "--out",
            out_path.to_str().unwrap(),
        ],
    );
    assert!(out.contains("2 items"), "{out}");
    let out = agora_ok(home, &["data", "verify", &root, out_path.to_str().unwrap()]);
    assert!(out.contains("2 items checked"), "{out}");
    // A changed byte fails the check.
    let text = std::fs::read_to_string(&out_path).unwrap();
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, text.replacen("reentrancy", "reentrancy!", 1)).unwrap();
    let out = agora(home, &["data", "verify", &root, tampered.to_str().unwrap()]);
    assert!(!out.status.success());
    let parquet = dir.path().join("dataset.parquet");
    agora_ok(
        home,
        &[
            "data",
            "export",
            &root,
            "--node",
            &api,
            "--out",
            parquet.to_str().unwrap(),
            "--format",
            "parquet",
        ],
    );
    assert_eq!(&std::fs::read(&parquet).unwrap()[..4], b"PAR1");
    let d = json(home, &["data", "dataset", &root, "--node", &api, "--json"]);
    assert_eq!(d["dataset"]["items"], 2);
}
